import { noSandbox, noSecretRefs, setting, type Rotator } from '../types.ts';

/**
 * A person supplies the value (a provider's console has no API). The rotation waits in
 * `awaiting_value`; the scheduler reminds the notify list until the value arrives, and shows the
 * rotation overdue after `overdueMs`. Setting it at the source is the person's job.
 */
export function createManualRotator(): Rotator {
  return {
    type: 'manual',
    validate(settings) {
      setting.only(settings, ['instructions', 'reminderMs', 'overdueMs']);
      setting.str(settings, 'instructions', { optional: true, max: 2000 });
      if (settings.reminderMs !== undefined) setting.int(settings, 'reminderMs', 60_000, 30 * 86_400_000);
      if (settings.overdueMs !== undefined) setting.int(settings, 'overdueMs', 60_000, 365 * 86_400_000);
    },
    secretRefs: noSecretRefs,
    async generate() {
      return { value: null, state: {} };
    },
    async apply() {},
    async test(_rc, value) {
      return { ok: value.length > 0, detail: 'supplied by a person' };
    },
    async restore() {
      return { ok: false, detail: 'a manually rotated source must be restored by hand' };
    },
    async finalize() {},
    sandbox: noSandbox,
  };
}
