import { isForbiddenDestination } from './address-guard.ts';

/** A request about to leave Keyhold, after the destination check; connector types add their auth to it. */
export interface OutgoingRequest {
  method: string;
  url: URL;
  /** Lower-case names. */
  headers: Record<string, string>;
  body: Uint8Array | undefined;
}

export interface OutboundLimits {
  /** Until the response headers arrive (connect included): fetch has no separate connect timeout. */
  headersTimeoutMs: number;
  /** Until the whole response body is read. */
  totalTimeoutMs: number;
  /** Bytes of response body kept; the rest is not read (`truncated`). */
  maxResponseBytes: number;
}

export type OutboundResult =
  | { ok: true; status: number; headers: Headers; body: Buffer; truncated: boolean }
  | { ok: false; reason: 'timeout' | 'unreachable' | 'forbidden_address' }
  /** A header value (an injected credential, a filled template) HTTP cannot carry: nothing was sent. */
  | { ok: false; reason: 'unsendable_header'; header: string };

/** What a header value may hold (RFC 9110 field-value: visible ASCII, space, tab, obs-text): no control character, nothing past U+00FF. */
const SENDABLE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** The first header whose value could not be sent as it is, or null. */
function unsendableHeader(headers: Record<string, string>): string | null {
  for (const [name, value] of Object.entries(headers)) if (!SENDABLE.test(value)) return name;
  return null;
}

/**
 * Sends one request with fetch: redirects are never followed, both timeouts abort the request, and the
 * body is streamed and cut at the size limit. A header value with a control character is not sent at all. Errors become a reason code only: fetch's messages can
 * carry the URL, and with query-parameter auth the URL carries the credential.
 */
export async function sendOutbound(fetchImpl: typeof fetch, req: OutgoingRequest, limits: OutboundLimits): Promise<OutboundResult> {
  // fetch would refuse it too, as an error indistinguishable from an unreachable host.
  const unsendable = unsendableHeader(req.headers);
  if (unsendable !== null) return { ok: false, reason: 'unsendable_header', header: unsendable };
  const controller = new AbortController();
  let timedOut = false;
  const abort = () => {
    timedOut = true;
    controller.abort();
  };
  const total = setTimeout(abort, limits.totalTimeoutMs);
  const headersTimer = setTimeout(abort, limits.headersTimeoutMs);
  try {
    let res: Response;
    try {
      res = await fetchImpl(req.url, {
        method: req.method, headers: req.headers, redirect: 'manual', signal: controller.signal,
        ...(req.body !== undefined ? { body: req.body } : {}),
      });
    } catch (err) {
      if (isForbiddenDestination(err)) return { ok: false, reason: 'forbidden_address' };
      return { ok: false, reason: timedOut ? 'timeout' : 'unreachable' };
    } finally {
      clearTimeout(headersTimer);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let truncated = false;
    if (res.body) {
      const reader = res.body.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          const room = limits.maxResponseBytes - size;
          if (value.byteLength > room) {
            chunks.push(Buffer.from(value.subarray(0, room)));
            size += room;
            truncated = true;
            await reader.cancel().catch(() => {});
            break;
          }
          chunks.push(Buffer.from(value));
          size += value.byteLength;
        }
      } catch {
        return { ok: false, reason: timedOut ? 'timeout' : 'unreachable' };
      }
    }
    return { ok: true, status: res.status, headers: res.headers, body: Buffer.concat(chunks), truncated };
  } finally {
    clearTimeout(total);
  }
}
