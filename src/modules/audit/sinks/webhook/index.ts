import { createHmac } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { ConfigError } from '../../../../config/config.ts';
import type { AuditEvent, AuditSink } from '../../event.ts';
import { parseWebhookUrl } from './url.ts';

export { parseWebhookUrl } from './url.ts';

export const SIGNATURE_HEADER = 'x-keyhold-signature';
/** The response body is never needed; at most this much of it is read before the connection is dropped. */
export const MAX_RESPONSE_BYTES = 4096;
const MIN_SECRET_BYTES = 16;
// A body still trickling in after the status arrived is dropped after this long.
const DRAIN_MS = 5000;

export interface WebhookSinkOptions {
  /** Stable name; it keys the delivery cursor. */
  name: string;
  /** https, or http to loopback only. */
  url: string;
  /** When set, every request carries `x-keyhold-signature: sha256=<hex HMAC-SHA256 of the body>`. */
  secret?: string | Uint8Array;
  /** Extra request headers (e.g. a SIEM's collector token); they cannot replace the signature or content headers. */
  headers?: Record<string, string>;
  /** Trusted CA certificate(s) for a collector with a private CA. */
  ca?: string | Buffer;
  /** What a refused url or secret is called in the error: the setting the operator wrote (default: the sink's own words). */
  settingNames?: { url: string; secret: string };
}

/** `sha256=<hex>` over the exact request body. */
export function signBody(secret: string | Uint8Array, body: Uint8Array): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/**
 * POSTs each batch as a JSON array. Any 2xx acknowledges the batch; anything else (a redirect too:
 * none are followed) fails it, carrying the answer's Retry-After for the delivery loop when there is
 * one. Error messages never include the URL, which may carry a token.
 */
export function createWebhookSink(opts: WebhookSinkOptions): AuditSink {
  const names = opts.settingNames ?? { url: `audit sink ${opts.name} url`, secret: `audit sink ${opts.name} secret` };
  const url = parseWebhookUrl(names.url, opts.url);
  if (opts.secret !== undefined && Buffer.byteLength(opts.secret) < MIN_SECRET_BYTES) {
    throw new ConfigError(names.secret, `must be at least ${MIN_SECRET_BYTES} bytes`);
  }
  const https = url.protocol === 'https:';
  const newAgent = () => (https ? new HttpsAgent({ keepAlive: true, ...(opts.ca ? { ca: opts.ca } : {}) }) : new HttpAgent({ keepAlive: true }));
  let agent: HttpAgent | null = null;

  function post(events: readonly AuditEvent[], signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    const body = Buffer.from(JSON.stringify(events), 'utf8');
    const headers: Record<string, string> = {
      ...lowerKeys(opts.headers ?? {}),
      'content-type': 'application/json',
      'content-length': String(body.length),
      'user-agent': 'keyhold-audit',
    };
    if (opts.secret !== undefined) headers[SIGNATURE_HEADER] = signBody(opts.secret, body);
    agent ??= newAgent();
    return new Promise<void>((resolve, reject) => {
      const req = (https ? httpsRequest : httpRequest)(url, { method: 'POST', headers, agent: agent!, signal });
      req.on('error', (err: NodeJS.ErrnoException) => {
        reject(signal.aborted ? signal.reason : new Error(`webhook request failed: ${err.code ?? err.name}`));
      });
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        discardBody(res);
        if (status >= 200 && status < 300) return resolve();
        const retryAfterMs = retryAfter(res.headers['retry-after'], Date.now());
        if (retryAfterMs === null) return reject(new Error(`webhook answered HTTP ${status}`));
        reject(Object.assign(new Error(`webhook answered HTTP ${status}, Retry-After ${Math.ceil(retryAfterMs / 1000)} s`), { retryAfterMs }));
      });
      req.end(body);
    });
  }

  return {
    name: opts.name,
    deliver: post,
    async close() {
      agent?.destroy();
      agent = null;
    },
  };
}

/**
 * A Retry-After header (RFC 9110 §10.2.3) in milliseconds from `now`: delay-seconds or an HTTP date;
 * null when absent, malformed or already past. The delivery loop bounds it (delivery-ports.ts retryDelay).
 * @example
 * retryAfter('120', now);                              // 120_000
 * retryAfter('Wed, 21 Oct 2026 07:28:00 GMT', now);   // ms until then, or null if past
 */
export function retryAfter(header: string | undefined, now: number): number | null {
  const text = header?.trim();
  if (!text) return null;
  if (/^\d+$/.test(text)) return Number(text) > 0 ? Number(text) * 1000 : null;
  const at = Date.parse(text);
  return Number.isFinite(at) && at > now ? at - now : null;
}

/** Reads at most MAX_RESPONSE_BYTES (so a finished response can return its socket to the pool), never more. */
function discardBody(res: IncomingMessage) {
  if (Number(res.headers['content-length'] ?? 0) > MAX_RESPONSE_BYTES) {
    res.destroy();
    return;
  }
  let read = 0;
  const timer = setTimeout(() => res.destroy(), DRAIN_MS);
  timer.unref();
  res.on('data', (chunk: Buffer) => {
    read += chunk.length;
    if (read > MAX_RESPONSE_BYTES) res.destroy();
  });
  res.on('error', () => {});
  res.on('close', () => clearTimeout(timer));
}

function lowerKeys(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}
