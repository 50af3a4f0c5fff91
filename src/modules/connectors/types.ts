/**
 * Connectors (SPEC §1, §5): configured integration instances per (tenant, environment, name) with
 * non-secret settings and named secret slots. A connector references secrets by name; it never
 * stores a value. Each type is a folder under `types/` implementing `ConnectorType`.
 */

export const CONNECTOR_TYPES = ['http', 'postgres', 'webhook-signer'] as const;
export type ConnectorTypeName = (typeof CONNECTOR_TYPES)[number];

export interface Connector {
  id: string;
  name: string;
  environment: string;
  type: ConnectorTypeName;
  settings: Record<string, unknown>;
  /** Slot name -> secret NAME, resolved in the connector's own environment. */
  slots: Record<string, string>;
  owner: string;
  /** A slot's secret is owned by a person (owner `user:<name>` or a username of the tenant). */
  personal: boolean;
  createdAt: string;
  updatedAt: string;
  createdBy: string;
  revision: number;
}

export interface HealthResult {
  ok: boolean;
  latencyMs: number;
  status?: number;
  /** For people; never a value (the caller redacts it too). */
  detail: string;
}

/** Where a credential may go: scheme, exact host, port and path prefix. */
export interface Destination {
  protocol: 'http:' | 'https:';
  hostname: string;
  port: string;
  pathPrefix: string;
}

/** The request the proxy forwards, after the connector's auth is applied. */
export interface OutgoingRequest {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body: string | null;
}

/** One kind of connector: how its settings are checked, which slots it needs, where it may send, how it authenticates. */
export interface ConnectorType<S = unknown> {
  readonly name: ConnectorTypeName;
  /** Checks and normalises settings; throws VALIDATION_FAILED naming the setting. */
  parseSettings(raw: Record<string, unknown>): S;
  /** Slots the settings require (every one must be bound to a secret). */
  requiredSlots(settings: S): string[];
  /** Header names the connector sets itself: a caller may not set or override them. */
  reservedHeaders(settings: S): string[];
  /** Where requests through the proxy may go; empty when the type is not proxied (postgres). */
  destinations(settings: S): Destination[];
  /** Puts the credential on a request (proxied types only). */
  applyAuth?(settings: S, credentials: Record<string, string>, request: OutgoingRequest, now: number): void;
  /** The health check, with the given credentials (current values, or a rotation's pending ones). */
  healthCheck(settings: S, credentials: Record<string, string>, opts: { timeoutMs: number; now: number; fetch: typeof fetch }): Promise<Omit<HealthResult, 'latencyMs'>>;
}
