import type { Logger } from '../../../platform/logger.ts';
import type { Notification, Notifier } from '../notifier.ts';

/**
 * The notifier until the webhook and SMTP channels land: one structured log line per notification
 * (warn for alerts, so log-based alerting catches break-glass). The body goes out as `text`:
 * the logger redacts any field named `body`.
 */
export function createLogNotifier(deps: { logger: Pick<Logger, 'info' | 'warn'> }): Notifier {
  return {
    async notify(n: Notification) {
      const line = {
        notification: {
          type: n.type, tenantId: n.tenantId, severity: n.severity, subject: n.subject, text: n.body,
          recipients: n.recipients.map((r) => `${r.kind}:${r.id}`), resource: `${n.resource.type}:${n.resource.id}`,
        },
      };
      if (n.severity === 'alert') deps.logger.warn(line, n.subject);
      else deps.logger.info(line, n.subject);
    },
  };
}
