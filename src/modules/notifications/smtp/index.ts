import type { Notification, Notifier } from '../notifier.ts';
import { sendMail, type SmtpOptions } from './client.ts';

export { sendMail, type Mail, type SmtpOptions } from './client.ts';

/**
 * E-mail channel: mails each notification to its `email` recipients (other recipients have no
 * address here and are skipped). Retries with backoff; never throws (onError hears of failures).
 */
export function createSmtpNotifier(opts: SmtpOptions & { from: string; attempts?: number; baseDelayMs?: number; onError?: (err: Error) => void }): Notifier {
  const attempts = opts.attempts ?? 3;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());
  return {
    async notify(n: Notification): Promise<void> {
      const to = n.recipients.filter((r) => r.kind === 'email').map((r) => r.id);
      if (to.length === 0) return;
      let last: Error | null = null;
      for (let i = 0; i < attempts; i++) {
        if (i > 0) await sleep((opts.baseDelayMs ?? 1000) * 4 ** (i - 1));
        try {
          await sendMail(opts, {
            from: opts.from, to, subject: `[Keyhold] ${n.subject}`, text: n.body,
            headers: { 'X-Keyhold-Type': n.type, 'X-Keyhold-Severity': n.severity },
          });
          return;
        } catch (err) {
          last = err as Error;
        }
      }
      opts.onError?.(new Error(`notification e-mail of ${n.type} failed: ${last?.message ?? 'unknown'}`));
    },
  };
}
