/** The connector types Keyhold ships; each is a folder under types/. */
export const CONNECTOR_TYPE_NAMES = ['http', 'postgres', 'webhook-signer'] as const;
export type ConnectorTypeName = (typeof CONNECTOR_TYPE_NAMES)[number];

/** A configured integration instance in one environment. It names secrets; it never holds a value. */
export interface Connector {
  id: string;
  name: string;
  environment: string;
  type: ConnectorTypeName;
  settings: Record<string, unknown>;
  /** Slot → secret name, resolved in the connector's own environment. */
  slots: Record<string, string>;
  owner: string;
  /** A slot's secret is owned by a person (`user:<name>` or a username of the tenant): inventory flags it. */
  personal: boolean;
  createdAt: string;
  updatedAt: string;
  createdBy: string;
  revision: number;
}

/** Outcome of a health check. `detail` is written by Keyhold from a fixed vocabulary: never a value, never an upstream body. */
export interface HealthResult {
  ok: boolean;
  latencyMs: number;
  status?: number;
  detail: string;
  /** Stable reason code: ok, http_status, timeout, unreachable, auth_failed, connect_failed, query_failed, slot_unresolved, destination_refused, unsendable_header. */
  reason: string;
}

export interface CreateConnectorInput {
  name: string;
  type: string;
  settings: Record<string, unknown>;
  slots: Record<string, string>;
  owner: string;
}

/** Settings and slots replace the stored ones wholesale; `revision` is the check-and-set guard. */
export interface UpdateConnectorInput {
  settings?: Record<string, unknown>;
  slots?: Record<string, string>;
  owner?: string;
  revision?: number;
}

/** One (environment, connector, slot) that names a secret: what breaks if it changes. */
export interface Dependent {
  environment: string;
  connector: string;
  slot: string;
}
