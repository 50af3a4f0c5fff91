import type { NotifySettings } from '../../config/config.ts';
import { createFanoutNotifier } from './fanout.ts';
import type { Notifier } from './notifier.ts';
import { createSmtpNotifier } from './smtp/index.ts';
import { createWebhookNotifier } from './webhook/index.ts';

/**
 * The configured channels (KEYHOLD_NOTIFY_*) behind one notifier; none configured: notifications are dropped.
 * `fetch` is the webhook's: the server passes the connectors' guarded fetch, which never reaches metadata addresses.
 */
export function notifierFromSettings(settings: NotifySettings, onError: (err: unknown) => void, fetch?: typeof globalThis.fetch): Notifier {
  const channels: Notifier[] = [];
  if (settings.webhook) channels.push(createWebhookNotifier({ ...settings.webhook, onError, ...(fetch ? { fetch } : {}) }));
  if (settings.smtp) channels.push(createSmtpNotifier({ ...settings.smtp, onError }));
  return createFanoutNotifier(channels, onError);
}
