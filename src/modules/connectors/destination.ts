import { fail } from '../../errors/index.ts';
import { isForbiddenHost, isLoopbackHost } from '../../platform/addresses.ts';

/** An allowlisted destination root: exact scheme, host and port, and a path prefix (no trailing slash; '' for the root). */
export interface Destination {
  origin: string;
  prefix: string;
  /**
   * A slot URL's own query (without '?'), sent as written on every call to it, before the caller's parameters:
   * Teams Workflows and Logic Apps webhooks carry their signature there. Configured destinations have none.
   */
  query?: string;
}

/** Why a path was refused; each is a stable reason code in the `proxy.refused` audit event. */
export type PathRefusal =
  | 'absolute_url' | 'relative_path' | 'protocol_relative' | 'backslash' | 'userinfo' | 'forbidden_character'
  | 'dot_segment' | 'encoded_separator' | 'control_character' | 'bad_percent_encoding' | 'outside_prefix' | 'path_too_long';

export type PathResult = { ok: true; url: URL } | { ok: false; reason: PathRefusal };

// RFC 3986 pchar plus '/' and '%', minus '@' (a userinfo trick needs it; send %40 for a literal @).
const PATH_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:/%]*$/;
const MAX_PATH = 2048;

/** Why a destination URL was refused; the text completes "settings.<field> ..." or "the URL in slot ...". */
export type DestinationProblem = { reason: 'forbidden_host' | 'plain_http' | 'not_destination'; text: string };

// RFC 3986 query characters but "'" (a URL parser percent-encodes it in http(s) queries, changing a signed query).
const QUERY_CHARS = /^[A-Za-z0-9\-._~!$&()*+,;=:@/?%]*$/;

/**
 * Checks a destination root against the rules of every destination; the problem, never the URL, otherwise.
 * `query`: the URL may carry a query (a slot's webhook URL), kept exactly as written; configured roots may not.
 */
export function checkDestination(raw: unknown, opts: { query?: boolean } = {}): { ok: true; dest: Destination } | ({ ok: false } & DestinationProblem) {
  const no = (reason: DestinationProblem['reason'], text: string) => ({ ok: false as const, reason, text });
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 2048) return no('not_destination', 'must be an http(s) URL');
  const cut = opts.query ? raw.indexOf('?') : -1;
  const base = cut < 0 ? raw : raw.slice(0, cut);
  const query = cut < 0 ? '' : raw.slice(cut + 1);
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    return no('not_destination', 'is not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return no('not_destination', 'must use http or https');
  // Credentials go in these requests: over plain http anyone on the path reads them.
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) return no('plain_http', 'must use https (plain http only to loopback)');
  if (isForbiddenHost(url.hostname)) return no('forbidden_host', 'is a link-local or cloud metadata address, which Keyhold never calls');
  if (url.username || url.password || hasUserinfoSign(base, url)) return no('not_destination', 'must not carry credentials: put them in a slot');
  if (url.search || url.hash || base.includes('?') || base.includes('#')) return no('not_destination', 'must not have a query or fragment');
  if (base.includes('\\') || /%(2e|2f|5c)/i.test(base) || /\/\.\.?(\/|$)/.test(base)) return no('not_destination', 'must be a plain path without dot segments or encoded separators');
  if (query.includes('#')) return no('not_destination', 'must not have a fragment');
  if (!QUERY_CHARS.test(query) || /%(?![0-9A-Fa-f]{2})/.test(query)) return no('not_destination', 'has a query with characters outside RFC 3986 or a broken percent-encoding');
  const dest: Destination = { origin: url.origin, prefix: url.pathname.replace(/\/+$/, '') };
  if (query !== '') {
    const sent = new URL(url.href);
    sent.search = query;
    if (sent.search !== `?${query}`) return no('not_destination', 'has a query a URL parser would rewrite');
    dest.query = query;
  }
  return { ok: true, dest };
}

/**
 * An '@' before the path, however the parser read it, is a userinfo trick. In the path it is a character
 * (Microsoft Teams webhook URLs carry one), allowed only where the text is plainly `scheme://host/...`.
 */
function hasUserinfoSign(raw: string, url: URL): boolean {
  if (!raw.includes('@')) return false;
  const scheme = `${url.protocol}//`;
  if (raw.slice(0, scheme.length).toLowerCase() !== scheme) return true;
  const authority = raw.slice(scheme.length).split('/')[0]!;
  return authority.includes('@') || !url.pathname.includes('@');
}

/** A destination whose URL is the value of a slot's secret (a webhook URL that is itself the credential), read at each call. */
export interface SlotDestination {
  slot: string;
}

export type DestinationEntry = Destination | SlotDestination;

export const isSlotDestination = (d: DestinationEntry): d is SlotDestination => 'slot' in d;

/** What a path is checked against before a slot's URL is read: every rule but the prefix (checked again once it is known). */
export const UNREAD_SLOT_DESTINATION: Destination = { origin: 'https://slot.invalid', prefix: '' };

export type SlotDestinationResult =
  | { ok: true; dest: Destination }
  | { ok: false; code: 'DESTINATION_FORBIDDEN' | 'DESTINATION_NOT_ALLOWED'; reason: string; message: string };

/**
 * The destination a slot's URL names, held to every rule of a configured one; refused with a message that
 * names the slot, never the URL (it is the credential). Nothing can check it when the connector is saved.
 */
export function slotDestination(value: string | undefined, slot: string): SlotDestinationResult {
  const checked = checkDestination(value, { query: true });
  if (checked.ok) return checked;
  const code = checked.reason === 'forbidden_host' ? 'DESTINATION_FORBIDDEN' : 'DESTINATION_NOT_ALLOWED';
  return { ok: false, code, reason: `slot_url_${checked.reason}`, message: `the URL in slot "${slot}" ${checked.text}` };
}

/** Parses a configured destination root. Settings are trusted more than requests, but still get no userinfo, query or fragment. */
export function parseDestination(raw: unknown, field: string): Destination {
  const checked = checkDestination(raw);
  if (!checked.ok) fail('VALIDATION_FAILED', `settings.${field} ${checked.text}`);
  return checked.dest;
}

/** The canonical text of a destination, as stored in settings. */
export function destinationText(d: Destination): string {
  return d.origin + (d.prefix === '' ? '' : d.prefix);
}

/**
 * Resolves a caller's path under a destination, or says why not. The path is appended to the prefix
 * ('' is the prefix itself); the host never comes from the caller. Anything a server or a URL parser
 * might read differently from us (dot segments, encoded separators at any decoding depth, backslashes,
 * '@', control characters) is refused rather than normalised, and the result must still sit under the prefix.
 */
export function resolvePath(dest: Destination, path: string): PathResult {
  const no = (reason: PathRefusal): PathResult => ({ ok: false, reason });
  if (path.length > MAX_PATH) return no('path_too_long');
  if (path !== '' && !path.startsWith('/')) {
    if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(path)) return no('absolute_url');
    if (path.startsWith('\\')) return no('backslash');
    return no(path.includes('@') ? 'userinfo' : 'relative_path');
  }
  if (path.startsWith('//')) return no('protocol_relative');
  if (path.includes('\\')) return no('backslash');
  if (path.includes('@')) return no('userinfo');
  if (/[\u0000-\u001f\u007f]/.test(path)) return no('control_character');
  if (!PATH_CHARS.test(path)) return no('forbidden_character');
  // Decoded until no escape is left (each pass shortens the path, so this ends): a fixed number of passes would let
  // one more level of %25 carry a dot segment or a separator past the checks.
  let level = path;
  while (level.includes('%')) {
    if (/%(?![0-9A-Fa-f]{2})/.test(level)) return no('bad_percent_encoding');
    if (/%(2e|2f|5c)/i.test(level)) return no('encoded_separator');
    if (/%(0[0-9a-f]|1[0-9a-f]|7f)/i.test(level)) return no('control_character');
    try {
      level = decodeURIComponent(level);
    } catch {
      return no('bad_percent_encoding');
    }
    if (/[\u0000-\u001f\u007f\\]/.test(level)) return no('control_character');
  }
  // A ";parameter" does not hide a dot segment: Tomcat and Spring drop it first, so "/..;/" is "/../" to them.
  if (path.split('/').some((segment) => /^\.\.?(?:;|$)/.test(segment))) return no('dot_segment');
  const wanted = dest.prefix + path;
  let url: URL;
  try {
    url = new URL(dest.origin + wanted);
  } catch {
    return no('forbidden_character');
  }
  // The URL parser must have changed nothing: same origin, same path, under the prefix.
  if (url.origin !== dest.origin || url.pathname !== (wanted === '' ? '/' : wanted) || url.search !== '' || url.hash !== '') return no('outside_prefix');
  if (dest.prefix !== '' && url.pathname !== dest.prefix && !url.pathname.startsWith(dest.prefix + '/')) return no('outside_prefix');
  if (dest.query !== undefined) url.search = dest.query;
  return { ok: true, url };
}
