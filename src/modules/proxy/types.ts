import type { Redactor } from '../redaction/redactor.ts';
/** A request the caller wants sent through a connector; the path is relative to the connector's destination root. */
export interface ProxyRequest {
  method: string;
  path: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  /** A string is sent as is; anything else as JSON. */
  body?: unknown;
  /** A named extra destination of the connector (settings.destinations); omitted: baseUrl. */
  destination?: string;
}

/** The upstream answer with every known secret value masked. */
export interface ProxyResponse {
  status: number;
  headers: Record<string, string>;
  /** Parsed JSON when the upstream said JSON (and it was complete), else text; null when empty. */
  body: unknown;
  /** The body was longer than the response limit and was cut there. */
  truncated: boolean;
}

/** Which automation run a proxied call belongs to; it goes into every `secret.use` event. */
export interface RunContext {
  runId: string;
  automation: string;
  step: string;
}

/** Masks known values: the redaction module's TenantRedactors (its own redactors: a cut answer is checked for where a value may start). */
export interface TenantRedactorSource {
  forTenant(tenantId: string): Promise<Redactor>;
}

/** Why a proxied request was refused: the stable error code and the reason recorded in `proxy.refused`. */
export interface Refusal {
  code: 'DESTINATION_NOT_ALLOWED' | 'DESTINATION_FORBIDDEN' | 'PROXY_HEADER_NOT_ALLOWED' | 'TEMPLATE_NOT_ALLOWED';
  reason: string;
  message: string;
}
