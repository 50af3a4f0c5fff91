import { fail } from '../../../../errors/index.ts';
import { destinationText, parseDestination, resolvePath, slotDestination, UNREAD_SLOT_DESTINATION, type DestinationEntry } from '../../destination.ts';
import { sendOutbound, type OutgoingRequest } from '../../outbound.ts';
import { setQueryParam } from '../../query.ts';
import { headerSetting, httpHealth, settingsReader, type ConnectorType } from '../connector-type.ts';
import { signRequest } from './signing.ts';

export type HttpAuth =
  | { kind: 'none' }
  | { kind: 'bearer' }
  | { kind: 'basic' }
  | { kind: 'header'; header: string }
  | { kind: 'query'; param: string }
  | { kind: 'hmac'; signatureHeader: string; timestampHeader: string };

export interface HttpSettings {
  /** Absent: the destination is the URL in the secret of slot `url` (a webhook URL that is itself the credential). */
  baseUrl: string | undefined;
  /** Named extra destinations a request may pick with `destination`. */
  destinations: Record<string, string>;
  /** Path under baseUrl the health check GETs; '' is baseUrl itself. */
  healthPath: string;
  timeoutMs: number;
  auth: HttpAuth;
}

/** The slot whose secret holds the whole destination URL when there is no baseUrl. */
export const URL_SLOT = 'url';
const SLOTS: Record<HttpAuth['kind'], string[]> = { none: [], bearer: ['token'], basic: ['username', 'password'], header: ['value'], query: ['value'], hmac: ['signingKey'] };
const DESTINATION_NAME = /^[a-z][a-z0-9-]{0,62}$/;
const QUERY_PARAM = /^[A-Za-z0-9_.\-[\]]{1,128}$/;

function parseAuth(raw: Record<string, unknown> | undefined): HttpAuth {
  if (!raw) fail('VALIDATION_FAILED', 'settings.auth is required: {"kind": "none" | "bearer" | "basic" | "header" | "query" | "hmac", ...}');
  const kind = raw.kind;
  const r = settingsReader(raw, ['kind', 'header', 'param', 'signatureHeader', 'timestampHeader']);
  switch (kind) {
    case 'none':
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
      fail('VALIDATION_FAILED', 'settings.auth.kind must be one of none, bearer, basic, header, query, hmac');
  }
}

function protectedHeaders(auth: HttpAuth): string[] {
  switch (auth.kind) {
    case 'none':
      return [];
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
    case 'none':
      return [];
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
      setQueryParam(req.url, auth.param, values.value!);
      return [req.url.search];
    case 'hmac':
      req.headers[auth.timestampHeader] = String(now);
      req.headers[auth.signatureHeader] = signRequest(values.signingKey!, req.method, req.url.pathname + req.url.search, now, req.body);
      return [];
  }
}

function allDestinations(s: HttpSettings): Record<string, DestinationEntry> {
  const out: Record<string, DestinationEntry> = { '': s.baseUrl === undefined ? { slot: URL_SLOT } : parseDestination(s.baseUrl, 'baseUrl') };
  for (const [name, url] of Object.entries(s.destinations)) out[name] = parseDestination(url, `destinations.${name}`);
  return out;
}

/** A generic HTTP API: no auth but a secret URL, bearer, basic, custom header, query parameter or HMAC request signing. */
export const httpType: ConnectorType<HttpSettings> = {
  name: 'http',
  parseSettings(raw) {
    const r = settingsReader(raw, ['baseUrl', 'destinations', 'healthPath', 'timeoutMs', 'auth']);
    const rawBase = r.string('baseUrl');
    const baseUrl = rawBase === undefined ? undefined : destinationText(parseDestination(rawBase, 'baseUrl'));
    const destinations: Record<string, string> = {};
    const extra = r.object('destinations') ?? {};
    if (Object.keys(extra).length > 16) fail('VALIDATION_FAILED', 'settings.destinations has at most 16 entries');
    for (const [name, url] of Object.entries(extra)) {
      if (!DESTINATION_NAME.test(name)) fail('VALIDATION_FAILED', 'settings.destinations keys are lower-case names (letters, digits, -)');
      destinations[name] = destinationText(parseDestination(url, `destinations.${name}`));
    }
    const healthPath = r.string('healthPath', { max: 512, allowEmpty: true }) ?? '';
    const root = baseUrl === undefined ? UNREAD_SLOT_DESTINATION : parseDestination(baseUrl, 'baseUrl');
    if (!resolvePath(root, healthPath).ok) fail('VALIDATION_FAILED', 'settings.healthPath must be a plain path under baseUrl, starting with /');
    const auth = parseAuth(r.object('auth'));
    // The URL slot's secret is then the only credential: without it the connector would govern no secret at all.
    if (auth.kind === 'none' && baseUrl !== undefined) fail('VALIDATION_FAILED', `settings.auth.kind "none" needs the destination in slot "${URL_SLOT}" (omit settings.baseUrl)`);
    return { baseUrl, destinations, healthPath, timeoutMs: r.int('timeoutMs', 100, 120_000, 10_000), auth };
  },
  slots: (s) => ({ required: [...(s.baseUrl === undefined ? [URL_SLOT] : []), ...SLOTS[s.auth.kind]], optional: [] }),
  async health(s, values, io) {
    const root = s.baseUrl === undefined ? slotDestination(values[URL_SLOT], URL_SLOT) : { ok: true as const, dest: parseDestination(s.baseUrl, 'baseUrl') };
    if (!root.ok) return root.code === 'DESTINATION_FORBIDDEN' ? { ok: false, reason: 'forbidden_address', detail: root.message } : { ok: false, reason: 'destination_refused', detail: root.message };
    const resolved = resolvePath(root.dest, s.healthPath);
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
