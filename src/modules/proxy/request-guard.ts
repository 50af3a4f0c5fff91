import type { PreparedConnector } from '../connectors/connector-service.ts';
import { isSlotDestination, type Destination, resolvePath, UNREAD_SLOT_DESTINATION } from '../connectors/destination.ts';
import { HEADER_NAME, RESERVED_HEADERS } from '../connectors/types/connector-type.ts';
import { templateNames } from './templates.ts';
import type { ProxyRequest, Refusal } from './types.ts';

/** `slot`: the destination is that slot's URL, so `url` is only the checked path until the value is read (see `slotDestination`). */
export type Checked = { ok: true; url: URL; slot?: string; query: Array<[string, string]>; headers: Record<string, string>; templates: string[] } | { ok: false; refusal: Refusal };

// Tab is allowed in header values (RFC 9110); every other control character, CR, LF and NUL are not.
const BAD_VALUE = /[\u0000-\u0008\u000a-\u001f\u007f]/;
/**
 * What would have the answer come back in pieces or in a coding the proxy does not decode: masking looks for a
 * whole value in text, so a credential the upstream echoes must arrive whole and readable. The proxy's client asks
 * for the codings it decodes (gzip, deflate, br, zstd) itself.
 */
const UNMASKABLE_ANSWER = ['range', 'if-range', 'accept-encoding'];

/** The refusal of a path; a slot's URL is the credential, so it is never named, and neither is its path prefix. */
export function pathRefusal(reason: string, dest: Destination | null): string {
  return `the path was refused (${reason}): it must be a plain path under ${dest ? dest.origin + dest.prefix : 'the URL of the connector\'s slot'}, starting with /`;
}

/**
 * Checks a proxied request against its connector before any value is resolved: the destination and
 * path, every header and query parameter, and every template. The first problem refuses the whole request.
 */
export function checkRequest(c: PreparedConnector, req: ProxyRequest): Checked {
  const http = c.kind.http!;
  const refuse = (code: Refusal['code'], reason: string, message: string): Checked => ({ ok: false, refusal: { code, reason, message } });
  const destinations = http.destinations(c.settings);
  const entry = Object.hasOwn(destinations, req.destination ?? '') ? destinations[req.destination ?? ''] : undefined;
  if (!entry) return refuse('DESTINATION_NOT_ALLOWED', 'unknown_destination', `connector "${c.name}" has no destination by that name`);
  const dest = isSlotDestination(entry) ? null : entry;
  const slot = isSlotDestination(entry) ? entry.slot : undefined;
  const resolved = resolvePath(dest ?? UNREAD_SLOT_DESTINATION, req.path);
  if (!resolved.ok) return refuse('DESTINATION_NOT_ALLOWED', resolved.reason, pathRefusal(resolved.reason, dest));
  const url = resolved.url;
  const protectedQuery = http.protectedQuery(c.settings);
  const query: Array<[string, string]> = [];
  for (const [key, value] of Object.entries(req.query ?? {})) {
    if (key.length === 0 || key.length > 256 || BAD_VALUE.test(key) || BAD_VALUE.test(value)) return refuse('PROXY_HEADER_NOT_ALLOWED', 'bad_query', 'query parameter names and values must not contain control characters');
    if (protectedQuery.includes(key)) return refuse('PROXY_HEADER_NOT_ALLOWED', 'auth_override', 'a query parameter would override the injected credential');
    query.push([key, value]);
  }
  const protectedHeaders = http.protectedHeaders(c.settings);
  const headers: Record<string, string> = {};
  for (const [rawName, value] of Object.entries(req.headers ?? {})) {
    if (!HEADER_NAME.test(rawName)) return refuse('PROXY_HEADER_NOT_ALLOWED', 'bad_header_name', 'header names must be HTTP tokens (no spaces, CR, LF or NUL)');
    if (typeof value !== 'string' || BAD_VALUE.test(value)) return refuse('PROXY_HEADER_NOT_ALLOWED', 'bad_header_value', `header "${rawName}" has a CR, LF, NUL or other control character`);
    const name = rawName.toLowerCase();
    if (RESERVED_HEADERS.includes(name)) return refuse('PROXY_HEADER_NOT_ALLOWED', 'hop_by_hop_header', `header "${name}" is set by the proxy, never by the caller`);
    if (protectedHeaders.includes(name)) return refuse('PROXY_HEADER_NOT_ALLOWED', 'auth_override', `header "${name}" carries the injected credential; the caller cannot set it`);
    if (UNMASKABLE_ANSWER.includes(name)) return refuse('PROXY_HEADER_NOT_ALLOWED', 'unmaskable_answer', `header "${name}" would have the answer come back in pieces or encoded, past the masking of credentials`);
    if (Object.hasOwn(headers, name)) return refuse('PROXY_HEADER_NOT_ALLOWED', 'duplicate_header', `header "${name}" is given twice`);
    headers[name] = value;
  }
  const names = templateNames([req.headers ?? {}, req.query ?? {}, req.body ?? null]);
  for (const name of names) {
    if (!c.templateSecrets.includes(name)) {
      return refuse('TEMPLATE_NOT_ALLOWED', 'template_not_allowed', `connector "${c.name}" does not allow secret "${name}" in templates (settings.templateSecrets)`);
    }
  }
  return { ok: true, url, ...(slot !== undefined ? { slot } : {}), query, headers, templates: [...names] };
}
