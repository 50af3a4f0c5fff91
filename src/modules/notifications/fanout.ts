import type { Notification, Notifier } from './notifier.ts';

/** Sends every notification to each channel at once; one channel failing never stops the others. */
export function createFanoutNotifier(channels: Notifier[], onError: (err: unknown) => void = () => {}): Notifier {
  return {
    async notify(n: Notification): Promise<void> {
      // An async wrapper turns a channel that throws before returning its promise into one more rejection.
      const results = await Promise.allSettled(channels.map(async (c) => c.notify(n)));
      for (const r of results) if (r.status === 'rejected') onError(r.reason);
    },
  };
}
