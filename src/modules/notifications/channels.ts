import type { NotifySettings } from '../../config/config.ts';
import { createFanoutNotifier } from './fanout.ts';
import type { Notifier } from './notifier.ts';
import type { RecipientResolver } from './recipients.ts';
import { createSmtpNotifier } from './smtp/index.ts';
import { createWebhookNotifier } from './webhook/index.ts';

/**
 * The configured channels (KEYHOLD_NOTIFY_*) behind one notifier; none configured: notifications are dropped.
 * `fetch` is the webhook's: the server passes the connectors' guarded fetch, which never reaches metadata addresses.
 * `people` is the SMTP channel's: it finds the addresses of the users, machine owners and group members a notification names.
 */
export function notifierFromSettings(settings: NotifySettings, onError: (err: unknown) => void, fetch?: typeof globalThis.fetch, people?: RecipientResolver): Notifier {
  const channels: Notifier[] = [];
  if (settings.webhook) channels.push(createWebhookNotifier({ ...settings.webhook, onError, ...(fetch ? { fetch } : {}) }));
  if (settings.smtp) channels.push(createSmtpNotifier({ ...settings.smtp, onError, ...(people ? { people } : {}) }));
  return createFanoutNotifier(channels, onError);
}
