import type { Notification, Notifier } from '../notifier.ts';
import { distinctAddresses, NO_PEOPLE, type RecipientResolver } from '../recipients.ts';
import { sendMail, type SmtpOptions } from './client.ts';

export { sendMail, type Mail, type SmtpOptions } from './client.ts';

/** What the To header says when every recipient is a person: their addresses go on the envelope only. */
export const UNDISCLOSED = 'undisclosed-recipients:;';

/**
 * E-mail channel: mails each notification to its `email` recipients and to the people its other
 * recipients name (users, machines' owners, approver groups' members), as `people` resolves them
 * in the notification's tenant; one message, each address once. People's addresses are personal
 * data: they are on the envelope only (like Bcc), while the `email` recipients (configured notify
 * lists) are in the To header. Nobody to mail: nothing is sent. Retries with backoff; never throws
 * (onError hears of failures, never with an address).
 */
export function createSmtpNotifier(opts: SmtpOptions & { from: string; attempts?: number; baseDelayMs?: number; onError?: (err: Error) => void; people?: RecipientResolver }): Notifier {
  const attempts = opts.attempts ?? 3;
  const people = opts.people ?? NO_PEOPLE;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());
  return {
    async notify(n: Notification): Promise<void> {
      const listed = distinctAddresses(n.recipients.filter((r) => r.kind === 'email').map((r) => r.id));
      let resolved: string[] = [];
      try {
        const named = n.recipients.filter((r) => r.kind !== 'email');
        if (named.length > 0) resolved = await people.addressesOf(n.tenantId, named);
      } catch (err) {
        // The configured lists still hear of it; the error names no one (a lookup error holds no address).
        opts.onError?.(new Error(`notification e-mail of ${n.type}: the recipients' addresses could not be looked up: ${(err as Error).message}`));
      }
      const to = distinctAddresses([...listed, ...resolved]);
      if (to.length === 0) return;
      let last: Error | null = null;
      for (let i = 0; i < attempts; i++) {
        if (i > 0) await sleep((opts.baseDelayMs ?? 1000) * 4 ** (i - 1));
        try {
          const { refused } = await sendMail(opts, {
            from: opts.from, to, subject: `[Keyhold] ${n.subject}`, text: n.body,
            headers: { To: listed.length > 0 ? listed.join(', ') : UNDISCLOSED, 'X-Keyhold-Type': n.type, 'X-Keyhold-Severity': n.severity },
          });
          // Sent to the others; not retried (they would get it twice). Counted, never named.
          if (refused > 0) opts.onError?.(new Error(`notification e-mail of ${n.type}: the relay refused ${refused} of ${to.length} recipients; the others were mailed`));
          return;
        } catch (err) {
          last = err as Error;
        }
      }
      opts.onError?.(new Error(`notification e-mail of ${n.type} failed: ${last?.message ?? 'unknown'}`));
    },
  };
}
