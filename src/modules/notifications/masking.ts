import type { Notification, Notifier } from './notifier.ts';

/** What goes out instead of a body that could not be checked for values (the vault sealed meanwhile). */
export const WITHHELD_BODY = '(text withheld: Keyhold could not check it for secret values; see the audit trail)';

/**
 * Masks every value of the notification's tenant in its subject and body before the channels see it.
 * Notifications carry text people typed (a justification, a denial or review comment), which may
 * hold a pasted value; Keyhold's own log masks known values, and the channels that leave the
 * process (webhook, e-mail) must not carry what the log would not. A mask that cannot be had
 * (sealed) withholds the body rather than send it unchecked.
 */
export function createMaskingNotifier(inner: Notifier, maskFor: (tenantId: string) => Promise<(text: string) => string>, onError: (err: unknown) => void = () => {}): Notifier {
  return {
    async notify(n: Notification): Promise<void> {
      let masked: Notification;
      try {
        const mask = await maskFor(n.tenantId);
        masked = { ...n, subject: mask(n.subject), body: mask(n.body) };
      } catch (err) {
        onError(err);
        masked = { ...n, body: WITHHELD_BODY };
      }
      await inner.notify(masked);
    },
  };
}
