import { destinationText, parseDestination, resolvePath } from '../../destination.ts';
import { sendOutbound } from '../../outbound.ts';
import { headerSetting, httpHealth, settingsReader, type ConnectorType } from '../connector-type.ts';
import { signatureHeader } from './signature.ts';

export interface WebhookSignerSettings {
  /** Where payloads go; also the allowlist root for proxied deliveries. */
  url: string;
  signatureHeader: string;
  timeoutMs: number;
}

/** An outgoing webhook signer: HMAC-SHA256 over `<t>.<body>` in one header (see signature.ts). */
export const webhookSignerType: ConnectorType<WebhookSignerSettings> = {
  name: 'webhook-signer',
  parseSettings(raw) {
    const r = settingsReader(raw, ['url', 'signatureHeader', 'timeoutMs']);
    return {
      url: destinationText(parseDestination(r.string('url', { required: true }), 'url')),
      signatureHeader: headerSetting(r.string('signatureHeader', { max: 128 }), 'keyhold-signature', 'signatureHeader'),
      timeoutMs: r.int('timeoutMs', 100, 120_000, 10_000),
    };
  },
  slots: () => ({ required: ['signingSecret'], optional: [] }),
  async health(s, values, io) {
    const resolved = resolvePath(parseDestination(s.url, 'url'), '');
    if (!resolved.ok) return { ok: false, reason: 'destination_refused', detail: 'the webhook URL is not a valid destination' };
    const t = io.nowSeconds();
    const body = Buffer.from(JSON.stringify({ type: 'keyhold.ping', created: t }), 'utf8');
    const headers = { 'content-type': 'application/json', [s.signatureHeader]: signatureHeader(body, [values.signingSecret!], t) };
    const limits = { ...io.limits, totalTimeoutMs: Math.min(io.limits.totalTimeoutMs, s.timeoutMs), headersTimeoutMs: Math.min(io.limits.headersTimeoutMs, s.timeoutMs), maxResponseBytes: 4096 };
    return httpHealth(await sendOutbound(io.fetch, { method: 'POST', url: resolved.url, headers, body }, limits), 'the webhook endpoint');
  },
  http: {
    destinations: (s) => ({ '': parseDestination(s.url, 'url') }),
    protectedHeaders: (s) => [s.signatureHeader],
    protectedQuery: () => [],
    authorize(req, s, values, now) {
      req.headers[s.signatureHeader] = signatureHeader(req.body ?? new Uint8Array(), [values.signingSecret!], now);
      return [];
    },
  },
};
