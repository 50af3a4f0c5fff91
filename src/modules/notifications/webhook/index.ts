import { createHmac, randomUUID } from 'node:crypto';
import { isForbiddenHost, isLoopbackHost } from '../../../platform/addresses.ts';
import type { Notification, Notifier } from '../notifier.ts';

export const SIGNATURE_HEADER = 'x-keyhold-signature';
export const TIMESTAMP_HEADER = 'x-keyhold-timestamp';
/** The delivery's id (also `id` in the signed body): the same on every retry, so receivers can drop duplicates and replays. */
export const DELIVERY_HEADER = 'x-keyhold-delivery';

export interface WebhookNotifierOptions {
  /** https, or http to loopback only. */
  url: string;
  /** HMAC-SHA256 key (at least 16 bytes): receivers verify every delivery with it. */
  secret: string;
  timeoutMs?: number;
  /** Attempts in all (first try included). */
  attempts?: number;
  /** Backoff before the n-th retry: baseDelayMs * 4^(n-1). */
  baseDelayMs?: number;
  fetch?: typeof fetch;
  onError?: (err: Error) => void;
  now?: () => number;
}

/**
 * `sha256=<hex>` over `<timestamp>.<body>`: binding the time lets receivers refuse replays of an
 * old delivery (compare the timestamp header with their clock).
 */
export function signNotification(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * Signed webhook channel: POSTs each notification as JSON with a timestamped HMAC-SHA256
 * signature, a timeout per attempt, and retries with exponential backoff. It never throws:
 * a failed delivery is reported to onError (without the URL, which may carry a token).
 */
export function createWebhookNotifier(opts: WebhookNotifierOptions): Notifier {
  const url = new URL(opts.url);
  if (!(url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname)))) {
    throw new Error('notification webhook must be https (plain http only to loopback)');
  }
  if (isForbiddenHost(url.hostname)) throw new Error('notification webhook must not be a link-local or cloud metadata address');
  // fetch refuses to build a request from such a URL: every delivery would fail.
  if (url.username || url.password) throw new Error('notification webhook URL must not carry a user name or password');
  if (Buffer.byteLength(opts.secret) < 16) throw new Error('notification webhook secret must be at least 16 bytes');
  const doFetch = opts.fetch ?? fetch;
  const attempts = opts.attempts ?? 4;
  const timeoutMs = opts.timeoutMs ?? 5000;
  const baseDelayMs = opts.baseDelayMs ?? 500;
  const now = opts.now ?? Date.now;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

  return {
    async notify(n: Notification): Promise<void> {
      // One id per notification, kept across retries: an attempt that timed out may still have been processed.
      const id = randomUUID();
      const body = JSON.stringify({ id, ...n, sentAt: new Date(now()).toISOString() });
      let last = 'not attempted';
      for (let i = 0; i < attempts; i++) {
        if (i > 0) await sleep(baseDelayMs * 4 ** (i - 1));
        const timestamp = String(Math.floor(now() / 1000));
        try {
          const res = await doFetch(url, {
            method: 'POST', body, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs),
            headers: { 'content-type': 'application/json', 'user-agent': 'keyhold-notify', [DELIVERY_HEADER]: id, [TIMESTAMP_HEADER]: timestamp, [SIGNATURE_HEADER]: signNotification(opts.secret, timestamp, body) },
          });
          await res.body?.cancel().catch(() => {});
          if (res.status >= 200 && res.status < 300) return;
          // A redirect is never followed (it could point anywhere) and, like a 4xx other than 408/429,
          // will not get better by asking again.
          const redirect = res.status >= 300 && res.status < 400;
          last = `HTTP ${res.status}${redirect ? ' (redirects are not followed)' : ''}`;
          if (redirect || (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429)) break;
        } catch (err) {
          last = (err as Error).name;
        }
      }
      opts.onError?.(new Error(`notification webhook delivery of ${n.type} failed: ${last}`));
    },
  };
}
