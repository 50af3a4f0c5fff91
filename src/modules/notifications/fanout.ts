import type { Notification, Notifier } from './notifier.ts';

/** Sends every notification to each channel at once; one channel failing never stops the others. */
export function createFanoutNotifier(channels: Notifier[], onError: (err: unknown) => void = () => {}): Notifier {
  return {
    async notify(n: Notification): Promise<void> {
      const results = await Promise.allSettled(channels.map((c) => c.notify(n)));
      for (const r of results) if (r.status === 'rejected') onError(r.reason);
    },
  };
}
