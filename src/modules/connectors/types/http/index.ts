import { fail } from '../../../../errors/index.ts';
import { destinationText, parseDestination, resolvePath, type Destination } from '../../destination.ts';
import { sendOutbound, type OutgoingRequest } from '../../outbound.ts';
import { headerSetting, httpHealth, settingsReader, type ConnectorType } from '../connector-type.ts';
import { signRequest } from './signing.ts';

export type HttpAuth =
  | { kind: 'bearer' }
  | { kind: 'basic' }
  | { kind: 'header'; header: string }
  | { kind: 'query'; param: string }
  | { kind: 'hmac'; signatureHeader: string; timestampHeader: string };

export interface HttpSettings {
  baseUrl: string;
  /** Named extra destinations a request may pick with `destination`. */
  destinations: Record<string, string>;
  /** Path under baseUrl the health check GETs; '' is baseUrl itself. */
  healthPath: string;
  timeoutMs: number;
  auth: HttpAuth;
}

const SLOTS: Record<HttpAuth['kind'], string[]> = { bearer: ['token'], basic: ['username', 'password'], header: ['value'], query: ['value'], hmac: ['signingKey'] };
const DESTINATION_NAME = /^[a-z][a-z0-9-]{0,62}$/;
const QUERY_PARAM = /^[A-Za-z0-9_.\-[\]]{1,128}$/;

function parseAuth(raw: Record<string, unknown> | undefined): HttpAuth {
  if (!raw) fail('VALIDATION_FAILED', 'settings.auth is required: {"kind": "bearer" | "basic" | "header" | "query" | "hmac", ...}');
  const kind = raw.kind;
  const r = settingsReader(raw, ['kind', 'header', 'param', 'signatureHeader', 'timestampHeader']);
  switch (kind) {
    case 'bearer':
    case 'basic':
      settingsReader(raw, ['kind']);
      return { kind };
    case 'header':
      settingsReader(raw, ['kind', 'header']);
      return { kind, header: headerSetting(r.string('header', { required: true, max: 128 }), '', 'auth.header') };
    case 'query':
      settingsReader(raw, ['kind', 'param']);
      return { kind, param: r.string('param', { required: true, pattern: QUERY_PARAM, hint: 'a query parameter name (letters, digits, _ . - [ ])' })! };
    case 'hmac': {
      settingsReader(raw, ['kind', 'signatureHeader', 'timestampHeader']);
      const signatureHeader = headerSetting(r.string('signatureHeader', { max: 128 }), 'x-signature', 'auth.signatureHeader');
      const timestampHeader = headerSetting(r.string('timestampHeader', { max: 128 }), 'x-signature-timestamp', 'auth.timestampHeader');
      if (signatureHeader === timestampHeader) fail('VALIDATION_FAILED', 'settings.auth.signatureHeader and timestampHeader must differ');
      return { kind, signatureHeader, timestampHeader };
    }
    default:
      fail('VALIDATION_FAILED', 'settings.auth.kind must be one of bearer, basic, header, query, hmac');
  }
}

function protectedHeaders(auth: HttpAuth): string[] {
  switch (auth.kind) {
    case 'bearer':
    case 'basic':
      return ['authorization'];
    case 'header':
      return ['authorization', auth.header];
    case 'query':
      return ['authorization'];
    case 'hmac':
      return ['authorization', auth.signatureHeader, auth.timestampHeader];
  }
}

/** Injects the credential of each auth kind. */
function authorize(req: OutgoingRequest, auth: HttpAuth, values: Readonly<Record<string, string>>, now: number): string[] {
  switch (auth.kind) {
    case 'bearer':
      req.headers.authorization = `Bearer ${values.token}`;
      return [];
    case 'basic': {
      // RFC 7617: the user-id ends at the first ':', so the API would read another user and password.
      if (values.username!.includes(':')) fail('UNSENDABLE_HEADER', 'the Basic username (slot username) holds ":", which Basic authentication cannot carry; nothing was sent');
      const credentials = Buffer.from(`${values.username}:${values.password}`, 'utf8').toString('base64');
      req.headers.authorization = `Basic ${credentials}`;
      // The credentials alone too: an echo may give them without the scheme, and with a part under the redactor's
      // floor no embedded form of either part covers them.
      return [req.headers.authorization, credentials];
    }
    case 'header':
      req.headers[auth.header] = values.value!;
      return [];
    case 'query':
      req.url.searchParams.set(auth.param, values.value!);
      return [req.url.search];
    case 'hmac':
      req.headers[auth.timestampHeader] = String(now);
      req.headers[auth.signatureHeader] = signRequest(values.signingKey!, req.method, req.url.pathname + req.url.search, now, req.body);
      return [];
  }
}

function allDestinations(s: HttpSettings): Record<string, Destination> {
  const out: Record<string, Destination> = { '': parseDestination(s.baseUrl, 'baseUrl') };
  for (const [name, url] of Object.entries(s.destinations)) out[name] = parseDestination(url, `destinations.${name}`);
  return out;
}

/** A generic HTTP API: bearer, basic, custom header, query parameter or HMAC request signing. */
export const httpType: ConnectorType<HttpSettings> = {
  name: 'http',
  parseSettings(raw) {
    const r = settingsReader(raw, ['baseUrl', 'destinations', 'healthPath', 'timeoutMs', 'auth']);
    const baseUrl = destinationText(parseDestination(r.string('baseUrl', { required: true }), 'baseUrl'));
    const destinations: Record<string, string> = {};
    const extra = r.object('destinations') ?? {};
    if (Object.keys(extra).length > 16) fail('VALIDATION_FAILED', 'settings.destinations has at most 16 entries');
    for (const [name, url] of Object.entries(extra)) {
      if (!DESTINATION_NAME.test(name)) fail('VALIDATION_FAILED', 'settings.destinations keys are lower-case names (letters, digits, -)');
      destinations[name] = destinationText(parseDestination(url, `destinations.${name}`));
    }
    const healthPath = r.string('healthPath', { max: 512, allowEmpty: true }) ?? '';
    if (!resolvePath(parseDestination(baseUrl, 'baseUrl'), healthPath).ok) fail('VALIDATION_FAILED', 'settings.healthPath must be a plain path under baseUrl, starting with /');
    return { baseUrl, destinations, healthPath, timeoutMs: r.int('timeoutMs', 100, 120_000, 10_000), auth: parseAuth(r.object('auth')) };
  },
  slots: (s) => ({ required: SLOTS[s.auth.kind], optional: [] }),
  async health(s, values, io) {
    const resolved = resolvePath(parseDestination(s.baseUrl, 'baseUrl'), s.healthPath);
    if (!resolved.ok) return { ok: false, reason: 'destination_refused', detail: 'the health path is outside the destination' };
    const req: OutgoingRequest = { method: 'GET', url: resolved.url, headers: { accept: 'application/json' }, body: undefined };
    authorize(req, s.auth, values, io.nowSeconds());
    const limits = { ...io.limits, totalTimeoutMs: Math.min(io.limits.totalTimeoutMs, s.timeoutMs), headersTimeoutMs: Math.min(io.limits.headersTimeoutMs, s.timeoutMs) };
    return httpHealth(await sendOutbound(io.fetch, req, { ...limits, maxResponseBytes: 4096 }), 'the health path');
  },
  http: {
    destinations: allDestinations,
    protectedHeaders: (s) => protectedHeaders(s.auth),
    protectedQuery: (s) => (s.auth.kind === 'query' ? [s.auth.param] : []),
    authorize: (req, s, values, now) => authorize(req, s.auth, values, now),
  },
};
