import type { RotationPoliciesTable } from '../../storage/schema.ts';
import type { Notification, NotificationType, Recipient } from '../notifications/notifier.ts';
import { isoTime } from '../../platform/clock.ts';
import type { RetryOutcome } from './retries.ts';
import type { Rotation } from './types.ts';

type Kind = 'succeeded' | 'rolled-back' | 'manual-due' | 'manual-overdue';

/** What happens next after a failed scheduler-driven attempt, as a line of a notification. */
export function retryLine(retry: RetryOutcome): string {
  return retry.gaveUp
    ? `Attempt ${retry.attempt} of ${retry.maxAttempts} failed: Keyhold has stopped retrying. Fix the cause, then rotate by hand (keyhold rotate); a success resets the count.`
    : `Attempt ${retry.attempt} of ${retry.maxAttempts} failed: Keyhold tries again at ${isoTime(retry.retryAt)}.`;
}

/**
 * The notification for a rotation outcome: names the secret, step and failing connectors, never a value. A failed
 * scheduler-driven run says when it is tried again; the last one Keyhold tries is `rotation.gave-up` instead.
 */
export function rotationNotification(tenantId: string, r: Rotation, kind: Kind, recipients: Recipient[], retry: RetryOutcome | null = null): Notification {
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
      if (retry) lines.push(retryLine(retry));
      if (retry?.gaveUp) {
        type = 'rotation.gave-up';
        subject = `Rotation of ${where} failed ${retry.attempt} times in a row; Keyhold gave up`;
      }
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

/** A scheduler-driven run that could not even start (its rotator gone, the store failing): no rotation row names it. */
export function startFailedNotification(p: RotationPoliciesTable, trigger: string, code: string, retry: RetryOutcome | null): Notification {
  const where = `${p.secret_name} in ${p.environment}`;
  const lines = [`Secret: ${p.secret_name}`, `Environment: ${p.environment}`, `Trigger: ${trigger}`, `Could not start: ${code}`];
  if (retry) lines.push(retryLine(retry));
  return {
    type: retry?.gaveUp ? 'rotation.gave-up' : 'rotation.failed', tenantId: p.tenant_id, severity: 'alert',
    recipients: JSON.parse(p.notify) as Recipient[], subject: `Rotation of ${where} could not start${retry?.gaveUp ? '; Keyhold gave up' : ''}`,
    body: lines.join('\n'), resource: { type: 'rotation-policy', id: p.id },
  };
}
