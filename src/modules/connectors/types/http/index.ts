import { createHash, createHmac } from 'node:crypto';
import { fail } from '../../../../errors/index.ts';
import { parseDestination } from '../../destination.ts';
import { HEADER_NAME, onlyKeys, record, text, whole } from '../../settings.ts';
import type { ConnectorType, Destination, OutgoingRequest } from '../../types.ts';

type Auth =
  | { kind: 'none' }
  | { kind: 'bearer' }
  | { kind: 'basic' }
  | { kind: 'header'; header: string }
  | { kind: 'query'; param: string }
  | { kind: 'hmac'; signatureHeader: string; timestampHeader: string };

export interface HttpSettings {
  baseUrl: string;
  destinations: Destination[];
  healthPath: string;
  timeoutMs: number;
  auth: Auth;
}

const SLOTS: Record<Auth['kind'], string[]> = { none: [], bearer: ['token'], basic: ['username', 'password'], header: ['value'], query: ['value'], hmac: ['signingKey'] };

function parseAuth(raw: Record<string, unknown>): Auth {
  const kind = text(raw, 'kind', { where: 'settings.auth' });
  const where = 'settings.auth';
  switch (kind) {
    case 'none': case 'bearer': case 'basic':
      onlyKeys(raw, ['kind'], where);
      return { kind };
    case 'header':
      onlyKeys(raw, ['kind', 'header'], where);
      return { kind, header: text(raw, 'header', { pattern: HEADER_NAME, where }) };
    case 'query':
      onlyKeys(raw, ['kind', 'param'], where);
      return { kind, param: text(raw, 'param', { pattern: /^[A-Za-z0-9_.-]{1,64}$/, where }) };
    case 'hmac':
      onlyKeys(raw, ['kind', 'signatureHeader', 'timestampHeader'], where);
      return {
        kind,
        signatureHeader: text(raw, 'signatureHeader', { default: 'X-Signature', pattern: HEADER_NAME, where }),
        timestampHeader: text(raw, 'timestampHeader', { default: 'X-Timestamp', pattern: HEADER_NAME, where }),
      };
    default:
      fail('VALIDATION_FAILED', `${where}.kind must be one of none, bearer, basic, header, query, hmac`);
  }
}

/**
 * The canonical string an `hmac` connector signs: timestamp, method, path with query, and the
 * SHA-256 of the body, one per line (documented in docs/connectors.md).
 */
export function hmacCanonical(timestamp: string, method: string, url: URL, body: string | null): string {
  const bodyHash = createHash('sha256').update(body ?? '').digest('hex');
  return `${timestamp}\n${method.toUpperCase()}\n${url.pathname}${url.search}\n${bodyHash}`;
}

function applyAuth(s: HttpSettings, creds: Record<string, string>, req: OutgoingRequest, now: number): void {
  const a = s.auth;
  if (a.kind === 'bearer') req.headers['authorization'] = `Bearer ${creds.token}`;
  else if (a.kind === 'basic') req.headers['authorization'] = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
  else if (a.kind === 'header') req.headers[a.header.toLowerCase()] = creds.value!;
  else if (a.kind === 'query') req.url.searchParams.set(a.param, creds.value!);
  else if (a.kind === 'hmac') {
    const ts = String(Math.floor(now / 1000));
    req.headers[a.timestampHeader.toLowerCase()] = ts;
    req.headers[a.signatureHeader.toLowerCase()] = createHmac('sha256', creds.signingKey!).update(hmacCanonical(ts, req.method, req.url, req.body)).digest('hex');
  }
}

/** Generic HTTP API: bearer, basic, custom header, query parameter or HMAC request signing. */
export const httpConnector: ConnectorType<HttpSettings> = {
  name: 'http',
  parseSettings(raw) {
    onlyKeys(raw, ['baseUrl', 'extraDestinations', 'healthPath', 'timeoutMs', 'auth']);
    const baseUrl = text(raw, 'baseUrl', { max: 2048 });
    const extras = raw.extraDestinations ?? [];
    if (!Array.isArray(extras) || extras.length > 8) fail('VALIDATION_FAILED', 'settings.extraDestinations must be an array of at most 8 URLs');
    const healthPath = text(raw, 'healthPath', { default: '/', max: 512 });
    if (!healthPath.startsWith('/')) fail('VALIDATION_FAILED', 'settings.healthPath must start with /');
    return {
      baseUrl,
      destinations: [parseDestination(baseUrl, 'baseUrl'), ...extras.map((e, i) => parseDestination(e, `extraDestinations[${i}]`))],
      healthPath,
      timeoutMs: whole(raw, 'timeoutMs', { default: 10_000, min: 100, max: 60_000 }),
      auth: parseAuth(record(raw, 'auth')),
    };
  },
  requiredSlots: (s) => SLOTS[s.auth.kind],
  reservedHeaders(s) {
    const a = s.auth;
    if (a.kind === 'header') return [a.header.toLowerCase()];
    if (a.kind === 'hmac') return [a.signatureHeader.toLowerCase(), a.timestampHeader.toLowerCase()];
    return [];
  },
  destinations: (s) => s.destinations,
  applyAuth,
  async healthCheck(s, creds, opts) {
    const d = s.destinations[0]!;
    const url = new URL(`${d.protocol}//${d.hostname}${d.port ? `:${d.port}` : ''}${d.pathPrefix}${s.healthPath === '/' ? '/' : s.healthPath}`);
    const req: OutgoingRequest = { method: 'GET', url, headers: {}, body: null };
    applyAuth(s, creds, req, opts.now);
    const res = await opts.fetch(req.url, { method: 'GET', headers: req.headers, redirect: 'manual', signal: AbortSignal.timeout(Math.min(opts.timeoutMs, s.timeoutMs)) });
    await res.body?.cancel();
    const ok = res.status >= 200 && res.status < 300;
    return { ok, status: res.status, detail: ok ? `GET ${s.healthPath} answered ${res.status}` : `GET ${s.healthPath} answered ${res.status} (expected 2xx)` };
  },
};
