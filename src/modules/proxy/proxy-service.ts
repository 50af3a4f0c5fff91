import { fail, KeyholdError } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';
import type { ConnectorService } from '../connectors/connector-service.ts';
import { describeDestination, resolveTarget } from '../connectors/destination.ts';
import { HEADER_NAME } from '../connectors/settings.ts';
import type { OutgoingRequest } from '../connectors/types.ts';
import type { ValueService } from '../secrets/value-service.ts';
import type { TenantContext } from '../shared/context.ts';
import { readLimited } from './read-limited.ts';
import { resolveSecretTemplates } from './secret-templates.ts';

export interface ProxyRequest { method: string; path: string; query?: Record<string, string>; headers?: Record<string, string>; body?: unknown }
export interface ProxyResponse { status: number; headers: Record<string, string>; body: unknown; truncated: boolean }
export interface RunContext { runId: string; automation: string; step: string }

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']);
/** Headers a caller may never set: the connection's own, and credentials. */
const FORBIDDEN_HEADERS = new Set([
  'host', 'authorization', 'proxy-authorization', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'te',
  'trailer', 'upgrade', 'proxy-connection', 'expect', 'cookie',
]);
const DROPPED_RESPONSE_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'set-cookie', 'content-length', 'content-encoding']);

/**
 * The credential proxy (SPEC §5): a caller with `use` on a connector's secrets sends a request
 * *relative to the connector*; Keyhold resolves the credentials in the connector's environment,
 * injects them, forwards to the connector's destination only (no redirects followed), and answers
 * with every known value of the tenant masked. Refusals are audited; each resolution is a
 * `secret.use` event carrying the connector and the run.
 */
export function createProxyService(deps: {
  connectors: Pick<ConnectorService, 'load' | 'credentials'>;
  values: Pick<ValueService, 'read'>;
  redactors: { forTenant(tenantId: string): Promise<{ redact(text: string): string }> };
  audit: Pick<AuditLog, 'record'>;
  clock: Clock;
  fetch?: typeof fetch;
  maxResponseBytes?: number;
}) {
  const { connectors, values, redactors, audit, clock } = deps;
  const doFetch = deps.fetch ?? globalThis.fetch;
  const maxResponseBytes = deps.maxResponseBytes ?? 1_048_576;

  async function refuse(ctx: TenantContext, code: 'DESTINATION_NOT_ALLOWED' | 'PROXY_REQUEST_INVALID', connector: string, environment: string, why: string, run?: RunContext): Promise<never> {
    const base = auditFrom(ctx);
    await audit.record([{
      ...base, action: 'proxy.refused', resource: { type: 'connector', id: null, name: connector }, environment, outcome: 'denied', reason: code,
      context: { ...base.context, why: why.slice(0, 200), ...(run ? { runId: run.runId, automation: run.automation, step: run.step } : {}) },
    }]);
    fail(code, why);
  }

  return {
    async call(ctx: TenantContext, input: { environment: string; connector: string; request: ProxyRequest; run?: RunContext }): Promise<ProxyResponse> {
      const { environment, request, run } = input;
      const refused = (code: 'DESTINATION_NOT_ALLOWED' | 'PROXY_REQUEST_INVALID', why: string) => refuse(ctx, code, input.connector, environment, why, run);
      const connector = await connectors.load(ctx, environment, input.connector);
      const settings = connector.settings;
      const destinations = connector.type.destinations(settings);
      if (destinations.length === 0 || !connector.type.applyAuth) return refused('DESTINATION_NOT_ALLOWED', `${connector.type.name} connectors are not reachable through the proxy`);
      const method = request.method.toUpperCase();
      if (!METHODS.has(method)) return refused('PROXY_REQUEST_INVALID', `method must be one of ${[...METHODS].join(', ')}`);

      const reserved = new Set([...FORBIDDEN_HEADERS, ...connector.type.reservedHeaders(settings)]);
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(request.headers ?? {})) {
        if (!HEADER_NAME.test(name) || /[\r\n\0]/.test(value)) return refused('PROXY_REQUEST_INVALID', 'a header name or value is malformed (CR, LF or NUL)');
        const lower = name.toLowerCase();
        if (reserved.has(lower) || lower.startsWith('proxy-')) return refused('PROXY_REQUEST_INVALID', `header ${name.slice(0, 64)} is set by the connector or the connection, not the caller`);
        headers[lower] = value;
      }
      if (request.path.includes('{{')) return refused('PROXY_REQUEST_INVALID', 'references are not resolved in the path');
      const target = resolveTarget(destinations, request.path, request.query);
      if ('refused' in target) return refused('DESTINATION_NOT_ALLOWED', `${target.refused}; allowed: ${describeDestination(destinations[0]!)}`);

      const auditContext: Record<string, string> = { destination: `${target.url.origin}${target.url.pathname}`.slice(0, 300), ...(run ? { runId: run.runId, automation: run.automation, step: run.step } : {}) };
      const resolved = await resolveSecretTemplates({ headers, query: Object.fromEntries(target.url.searchParams), body: request.body },
        (name) => values.read(ctx, name, environment, { purpose: 'use', auditContext: { ...auditContext, connector: connector.row.name } }).then((v) => v.value));
      if ('problem' in resolved) return refused('PROXY_REQUEST_INVALID', resolved.problem);
      target.url.search = new URLSearchParams(resolved.query).toString();
      const credentials = await connectors.credentials(ctx, connector, auditContext);

      const isText = typeof resolved.body === 'string';
      const outgoing: OutgoingRequest = {
        method, url: target.url, headers: resolved.headers,
        body: resolved.body === undefined || method === 'GET' || method === 'HEAD' ? null : isText ? (resolved.body as string) : JSON.stringify(resolved.body),
      };
      if (outgoing.body !== null && !outgoing.headers['content-type']) outgoing.headers['content-type'] = isText ? 'text/plain; charset=utf-8' : 'application/json';
      connector.type.applyAuth(settings, credentials, outgoing, clock.now());

      const timeoutMs = (settings as { timeoutMs?: number }).timeoutMs ?? 10_000;
      let res: Response;
      try {
        res = await doFetch(outgoing.url, { method, headers: outgoing.headers, body: outgoing.body, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
      } catch (err) {
        if ((err as Error).name === 'TimeoutError') throw new KeyholdError('UPSTREAM_TIMEOUT', `the destination did not answer within ${timeoutMs} ms`);
        throw new KeyholdError('UPSTREAM_FAILED', 'the destination could not be reached');
      }
      let body: { text: string; truncated: boolean };
      try {
        body = await readLimited(res, maxResponseBytes, timeoutMs);
      } catch (err) {
        if ((err as Error).name === 'TimeoutError') throw new KeyholdError('UPSTREAM_TIMEOUT', `the destination did not finish its answer within ${timeoutMs} ms`);
        throw new KeyholdError('UPSTREAM_FAILED', 'the answer could not be read');
      }
      const redactor = await redactors.forTenant(ctx.tenantId);
      const responseHeaders: Record<string, string> = {};
      res.headers.forEach((value, name) => {
        if (!DROPPED_RESPONSE_HEADERS.has(name)) responseHeaders[name] = redactor.redact(value);
      });
      const text = redactor.redact(body.text);
      let parsed: unknown = text;
      if (!body.truncated && /json/i.test(res.headers.get('content-type') ?? '')) {
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = text;
        }
      }
      return { status: res.status, headers: responseHeaders, body: parsed, truncated: body.truncated };
    },
  };
}

export type ProxyService = ReturnType<typeof createProxyService>;
