import type { Notification, NotificationType, Recipient } from '../notifications/notifier.ts';
import type { Rotation } from './types.ts';

type Kind = 'succeeded' | 'rolled-back' | 'manual-due' | 'manual-overdue';

/** The notification for a rotation outcome: names the secret, step and failing connectors, never a value. */
export function rotationNotification(tenantId: string, r: Rotation, kind: Kind, recipients: Recipient[]): Notification {
  const where = `${r.secret} in ${r.environment}`;
  const lines = [`Secret: ${r.secret}`, `Environment: ${r.environment}`, `Rotation: ${r.id} (${r.trigger}${r.rehearsal ? ', rehearsal' : ''})`];
  let type: NotificationType;
  let subject: string;
  switch (kind) {
    case 'succeeded':
      type = 'rotation.succeeded';
      subject = r.rehearsal ? `Rehearsal of ${where} passed` : `Rotated ${where}`;
      if (!r.rehearsal) lines.push(`New current version: ${r.toVersion ?? '?'} (previous: ${r.fromVersion ?? 'none'})`);
      break;
    case 'rolled-back':
      type = 'rotation.rolled-back';
      subject = `Rotation of ${where} failed at ${r.error?.step ?? '?'} and was rolled back`;
      lines.push(`Failed step: ${r.error?.step ?? '?'} (${r.error?.code ?? '?'})`, `Detail: ${r.error?.detail ?? ''}`, 'The current value was not changed.');
      for (const c of r.failedConnectors) lines.push(`Connector ${c.connector} (slots ${c.slots.join(', ')}): ${c.detail}`);
      break;
    case 'manual-due':
      type = 'rotation.manual-due';
      subject = `Rotation of ${where} needs a new value`;
      lines.push(`Supply it with: keyhold rotation supply ${r.secret} --env ${r.environment}`);
      break;
    case 'manual-overdue':
      type = 'rotation.manual-overdue';
      subject = `Rotation of ${where} is overdue`;
      lines.push(`Waiting since ${r.startedAt}. Supply it with: keyhold rotation supply ${r.secret} --env ${r.environment}`);
      break;
  }
  return {
    type, tenantId, severity: kind === 'rolled-back' || kind === 'manual-overdue' ? 'alert' : 'info',
    recipients, subject, body: lines.join('\n'), resource: { type: 'rotation', id: r.id },
  };
}
