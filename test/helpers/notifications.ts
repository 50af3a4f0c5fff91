import type { Notification, Notifier } from '../../src/modules/notifications/notifier.ts';

/** A notifier that keeps what it was given, so tests can assert who was told what. */
export function createMemoryNotifier(): Notifier & { sent: Notification[]; ofType(type: Notification['type']): Notification[] } {
  const sent: Notification[] = [];
  return {
    sent,
    async notify(n) {
      sent.push(n);
    },
    ofType: (type) => sent.filter((n) => n.type === type),
  };
}
