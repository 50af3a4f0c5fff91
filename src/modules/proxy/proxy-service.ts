import { fail } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';
import type { IdentifierHasher } from '../audit/identifiers.ts';
import type { ConnectorService, PreparedConnector } from '../connectors/connector-service.ts';
import { sendOutbound, type OutboundLimits, type OutgoingRequest } from '../connectors/outbound.ts';
import { createRedactor, unionRedactors } from '../redaction/redactor.ts';
import type { ValueService } from '../secrets/value-service.ts';
import type { TenantContext } from '../shared/context.ts';
import { resolvePath, slotDestination, type Destination } from '../connectors/destination.ts';
import { appendQuery, queryNames } from '../connectors/query.ts';
import { checkRequest, pathRefusal } from './request-guard.ts';
import { answerEncoding, readAnswer } from './answer-text.ts';
import { createCallMasker, decodedAnswer, maskEscaped, shapeResponse } from './response.ts';
import { filledBytes, fillTemplates } from './templates.ts';
import type { ProxyRequest, ProxyResponse, Refusal, RunContext, TenantRedactorSource } from './types.ts';

export interface ProxyLimits extends OutboundLimits {
  /** Bytes of request body after templates are filled. */
  maxRequestBytes: number;
  /**
   * Bytes read past `maxResponseBytes` and masked before the answer is cut there, so a value (or its
   * longest form) that straddles the cut is masked whole: cut first, its head would come back unmasked.
   */
  maskLookaheadBytes: number;
}

const BODYLESS = ['GET', 'HEAD'];

/**
 * The credential proxy (SPEC §5): a caller with `use` on a connector's secrets sends a request through
 * it; Keyhold checks it against the connector's destination allowlist, resolves the values in the
 * connector's environment, injects the auth, forwards it once (no redirects), and answers with every
 * known value masked. The caller never sees a credential.
 */
export function createProxyService(deps: {
  connectors: Pick<ConnectorService, 'definition' | 'requireUse' | 'resolve'>;
  values: Pick<ValueService, 'read'>;
  redactors: TenantRedactorSource;
  audit: Pick<AuditLog, 'record'>;
  /** A destination the connector does not have is the caller's text (maybe a pasted value): recorded as its keyed HMAC. */
  identifiers: Pick<IdentifierHasher, 'hash'>;
  clock: Clock;
  fetch: typeof fetch;
  limits: ProxyLimits;
}) {
  const { connectors, values, redactors, audit, identifiers, clock, limits } = deps;

  /** The destination as recorded: its name when the connector has it, else the HMAC of what the caller sent. */
  function recordedDestination(c: PreparedConnector, destination: string): string {
    return Object.hasOwn(c.kind.http!.destinations(c.settings), destination) ? destination : identifiers.hash(destination);
  }

  async function refuse(ctx: TenantContext, c: PreparedConnector, req: ProxyRequest, refusal: Refusal, run?: RunContext): Promise<never> {
    const redactor = await redactors.forTenant(ctx.tenantId);
    const base = auditFrom(ctx);
    await audit.record([{
      ...base, action: 'proxy.refused', resource: { type: 'connector', id: c.id, name: c.name }, environment: c.environment,
      outcome: 'denied', reason: refusal.code,
      context: {
        ...base.context, refusal: refusal.reason, method: req.method, path: redactor.redact(req.path.slice(0, 256)),
        ...(req.destination ? { destination: recordedDestination(c, req.destination) } : {}), ...(run ?? {}),
      },
    }]);
    fail(refusal.code, refusal.message);
  }

  return {
    /** Sends one request through a connector as the caller; `run` ties every `secret.use` event to an automation run. */
    async call(ctx: TenantContext, input: { environment: string; connector: string; request: ProxyRequest; run?: RunContext }): Promise<ProxyResponse> {
      const { request: req, run } = input;
      const c = await connectors.definition(ctx, input.environment, input.connector);
      if (!c.kind.http) fail('CONNECTOR_TYPE_MISMATCH', `connector "${c.name}" is a ${c.type} connector; only HTTP connectors carry proxied requests`);
      const method = req.method.toUpperCase();
      if (BODYLESS.includes(method) && req.body !== undefined) fail('VALIDATION_FAILED', `a ${method} request has no body`);
      // Before the request is looked at: a refusal names the destination, which only a caller who may use it should see.
      await connectors.requireUse(ctx, c);
      const checked = checkRequest(c, req);
      if (!checked.ok) return refuse(ctx, c, req, checked.refusal, run);

      const auditContext = { ...(run ?? {}), ...(req.destination ? { destination: req.destination } : {}) };
      const [ready, templateValues] = await Promise.all([
        connectors.resolve(ctx, c, { auditContext }),
        Promise.all(checked.templates.map(async (name) => {
          const read = await values.read(ctx, name, c.environment, { purpose: 'use', auditContext: { connector: c.name, template: 'true', ...auditContext } });
          return [name, read.value] as const;
        })),
      ]);
      // A slot's URL is known only now: held to the destination rules, then the path checked again under it.
      let url = checked.url;
      let dest: Destination;
      if (checked.slot === undefined) dest = c.kind.http.destinations(c.settings)[req.destination ?? ''] as Destination;
      else {
        const found = slotDestination(ready.values[checked.slot], checked.slot);
        if (!found.ok) return refuse(ctx, c, req, { code: found.code, reason: found.reason, message: `connector "${c.name}": ${found.message}` }, run);
        const resolved = resolvePath(found.dest, req.path);
        if (!resolved.ok) return refuse(ctx, c, req, { code: 'DESTINATION_NOT_ALLOWED', reason: resolved.reason, message: pathRefusal(resolved.reason, null) }, run);
        // The URL's own parameters (a webhook's signature among them) are part of the credential: never overridden.
        const own = queryNames(found.dest.query ?? '');
        if (checked.query.some(([key]) => own.has(key))) {
          return refuse(ctx, c, req, { code: 'PROXY_HEADER_NOT_ALLOWED', reason: 'auth_override', message: `connector "${c.name}": a query parameter would override one in the URL of slot "${checked.slot}"` }, run);
        }
        ({ url } = resolved);
        dest = found.dest;
      }
      const filled = new Map(templateValues);
      if (filledBytes([checked.headers, checked.query, req.body ?? null], filled) > limits.maxRequestBytes) {
        fail('BODY_TOO_LARGE', `the proxied request is larger than ${limits.maxRequestBytes} bytes once its templates are filled`);
      }
      const headers = fillTemplates(checked.headers, filled);
      appendQuery(url, checked.query.map(([key, value]) => [key, fillTemplates(value, filled)]));
      let body: Uint8Array | undefined;
      if (req.body !== undefined) {
        const isText = typeof req.body === 'string';
        body = Buffer.from(isText ? fillTemplates(req.body as string, filled) : JSON.stringify(fillTemplates(req.body, filled)), 'utf8');
        headers['content-type'] ??= isText ? 'text/plain; charset=utf-8' : 'application/json';
        if (body.byteLength > limits.maxRequestBytes) fail('BODY_TOO_LARGE', `the proxied body is larger than ${limits.maxRequestBytes} bytes`);
      }
      const out: OutgoingRequest = { method, url, headers, body };
      const injected = c.kind.http.authorize(out, ready.settings, ready.values, Math.floor(clock.now() / 1000));
      const timeout = typeof ready.settings.timeoutMs === 'number' ? ready.settings.timeoutMs : limits.totalTimeoutMs;
      const result = await sendOutbound(deps.fetch, out, {
        totalTimeoutMs: Math.min(limits.totalTimeoutMs, timeout), headersTimeoutMs: Math.min(limits.headersTimeoutMs, timeout),
        maxResponseBytes: limits.maxResponseBytes + limits.maskLookaheadBytes,
      });
      if (!result.ok) {
        if (result.reason === 'unsendable_header') fail('UNSENDABLE_HEADER', `connector "${c.name}": the value for header "${result.header}" holds a character HTTP cannot carry (a control character such as a line break); nothing was sent`);
        if (result.reason === 'timeout') fail('UPSTREAM_TIMEOUT', `connector "${c.name}": the destination did not answer in time`);
        if (result.reason === 'forbidden_address') fail('DESTINATION_FORBIDDEN', `connector "${c.name}": the destination resolves to a link-local or cloud metadata address`);
        fail('UPSTREAM_UNREACHABLE', `connector "${c.name}": the destination could not be reached`);
      }
      if (!decodedAnswer(result.headers.get('content-encoding'))) {
        fail('UPSTREAM_UNREADABLE', `connector "${c.name}": the destination answered in a content coding the proxy does not decode, so it could not be masked`);
      }
      const wire = [...Object.values(ready.values), ...filled.values(), ...injected];
      const callMask = createCallMasker(wire);
      const tenantRedactor = await redactors.forTenant(ctx.tenantId);
      const mask = (text: string) => tenantRedactor.redact(callMask(text));
      const encoding = answerEncoding(result.headers.get('content-type'), result.body);
      const text = encoding && readAnswer(result.body, encoding, (t) => maskEscaped(mask, t));
      if (typeof text !== 'string') fail('UPSTREAM_UNREADABLE', `connector "${c.name}": the destination answered in a character encoding the proxy does not read, or labelled as another, so it could not be masked`);
      return shapeResponse(result, { url, dest, text, mask, maxBytes: limits.maxResponseBytes,
        redactor: unionRedactors([tenantRedactor, createRedactor(wire, { floor: 4 })]),
      });
    },
  };
}

export type ProxyService = ReturnType<typeof createProxyService>;
