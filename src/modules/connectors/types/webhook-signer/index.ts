import { createHmac } from 'node:crypto';
import { parseDestination } from '../../destination.ts';
import { HEADER_NAME, onlyKeys, text, whole } from '../../settings.ts';
import type { ConnectorType, Destination, OutgoingRequest } from '../../types.ts';

export interface WebhookSignerSettings {
  url: string;
  destination: Destination;
  signatureHeader: string;
  timeoutMs: number;
}

/** The signature header value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (as Stripe does). */
export function webhookSignature(secret: string, timestamp: number, body: string): string {
  return `t=${timestamp},v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

function sign(s: WebhookSignerSettings, creds: Record<string, string>, req: OutgoingRequest, now: number): void {
  req.headers[s.signatureHeader.toLowerCase()] = webhookSignature(creds.signingSecret!, Math.floor(now / 1000), req.body ?? '');
}

/** An outgoing webhook: each request body is signed with the `signingSecret` slot. */
export const webhookSignerConnector: ConnectorType<WebhookSignerSettings> = {
  name: 'webhook-signer',
  parseSettings(raw) {
    onlyKeys(raw, ['url', 'signatureHeader', 'timeoutMs']);
    const url = text(raw, 'url', { max: 2048 });
    return {
      url, destination: parseDestination(url, 'url'),
      signatureHeader: text(raw, 'signatureHeader', { default: 'Keyhold-Signature', pattern: HEADER_NAME }),
      timeoutMs: whole(raw, 'timeoutMs', { default: 10_000, min: 100, max: 60_000 }),
    };
  },
  requiredSlots: () => ['signingSecret'],
  reservedHeaders: (s) => [s.signatureHeader.toLowerCase()],
  destinations: (s) => [s.destination],
  applyAuth: sign,
  async healthCheck(s, creds, opts) {
    const body = JSON.stringify({ type: 'keyhold.ping', at: new Date(opts.now).toISOString() });
    const req: OutgoingRequest = { method: 'POST', url: new URL(s.url), headers: { 'content-type': 'application/json' }, body };
    sign(s, creds, req, opts.now);
    const res = await opts.fetch(req.url, { method: 'POST', headers: req.headers, body, redirect: 'manual', signal: AbortSignal.timeout(Math.min(opts.timeoutMs, s.timeoutMs)) });
    await res.body?.cancel();
    const ok = res.status >= 200 && res.status < 300;
    return { ok, status: res.status, detail: `signed ping answered ${res.status}${ok ? '' : ' (expected 2xx)'}` };
  },
};
