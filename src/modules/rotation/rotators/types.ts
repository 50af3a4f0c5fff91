import { fail } from '../../../errors/index.ts';

/** Everything a rotator is told about one rotation. Values here are for the source only, never logged. */
export interface RotatorContext {
  tenantId: string;
  secretName: string;
  environment: string;
  rotationId: string;
  /** The policy's settings (non-secret; credentials are secret names to `resolve`). */
  settings: Record<string, unknown>;
  /** What this rotator recorded for the value now current (e.g. which alternating role, the issued credential's id). */
  currentState: Record<string, unknown>;
  /** What generate recorded for the new value (empty while generating). */
  state: Record<string, unknown>;
  /** The value now current, and the one before it (null when there is none). */
  current: string | null;
  previous: string | null;
  /**
   * Resolves another secret's current value in the same environment (an admin credential). Only
   * names this rotator's `secretRefs` declares for the policy's settings resolve; any other is refused.
   */
  resolve(name: string): Promise<string>;
  /** True in a rehearsal: the settings point at a sandbox copy, and nothing real may change. */
  rehearsal: boolean;
  signal: AbortSignal;
}

export interface CheckResult {
  ok: boolean;
  /** What happened, for people; never a value. */
  detail: string;
}

/** A new value (null: a person must supply it) and the state to record with it. */
export interface Generated {
  value: string | null;
  state: Record<string, unknown>;
}

/**
 * One kind of credential source (SPEC §6). The rotation calls, in order: generate → (pending stored)
 * → apply → test → (dependents verified) → (promoted) → finalize; on failure restore. Every call must
 * be safe to repeat: after a crash the rotation may call apply, restore or finalize again.
 */
export interface Rotator {
  readonly type: string;
  /** Checks settings when a policy is saved; throws ROTATOR_UNAVAILABLE naming the field. */
  validate(settings: Record<string, unknown>): void;
  /**
   * Every other secret the (valid) settings name, and the field naming it. The policy's setter must
   * be allowed to `use` each in the policy's environment, and `rc.resolve` resolves only these: a
   * rotator that reads a secret it does not declare here fails, so none can forget.
   */
  secretRefs(settings: Record<string, unknown>): SecretRef[];
  /** Makes the next value (and, for sources that issue credentials, asks the source for it). */
  generate(rc: RotatorContext): Promise<Generated>;
  /** Sets `value` at the source, so it works there from now on. */
  apply(rc: RotatorContext, value: string): Promise<void>;
  /** Proves `value` works at the source. */
  test(rc: RotatorContext, value: string): Promise<CheckResult>;
  /** Undoes apply (and generate) where the source allows: the current value works again. */
  restore(rc: RotatorContext, value: string): Promise<CheckResult>;
  /**
   * For sources whose generate already creates something there (an issued credential): undoes
   * generate alone, for a value Keyhold could not stage (never applied). Omitted by rotators whose
   * generate does not reach the source; restore is not a substitute (it assumes apply ran).
   */
  discard?(rc: RotatorContext, value: string): Promise<CheckResult>;
  /** After promotion: retire what the source still holds for the old value (`rc.current`, `rc.currentState`). */
  finalize(rc: RotatorContext): Promise<void>;
  /**
   * For a rehearsal: settings and state of a throw-away copy of the source (a scratch role, a
   * rehearsal endpoint), and how to clean it up. Rotators whose source is Keyhold itself return
   * the settings unchanged.
   */
  sandbox(rc: RotatorContext): Promise<Sandbox>;
}

/** A setting that names another secret of the tenant (resolved at run time as Keyhold itself). */
export interface SecretRef {
  field: string;
  name: string;
}

/** For rotators whose settings name no other secret. */
export const noSecretRefs: Rotator['secretRefs'] = () => [];

/** A throw-away copy of a source for rehearsals. */
export interface Sandbox {
  settings: Record<string, unknown>;
  currentState: Record<string, unknown>;
  current: string | null;
  /** `signal` aborts when the clean-up runs past the step deadline. */
  cleanup(signal: AbortSignal): Promise<void>;
}

/** Settings readers that fail with a message naming the field. */
export const setting = {
  str(settings: Record<string, unknown>, field: string, opts: { optional?: boolean; max?: number } = {}): string | undefined {
    const v = settings[field];
    if (v === undefined && opts.optional) return undefined;
    if (typeof v !== 'string' || v.length === 0 || v.length > (opts.max ?? 2048)) fail('ROTATOR_UNAVAILABLE', `settings.${field} must be a non-empty string`);
    return v;
  },
  int(settings: Record<string, unknown>, field: string, min: number, max: number, fallback?: number): number {
    const v = settings[field] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail('ROTATOR_UNAVAILABLE', `settings.${field} must be a whole number from ${min} to ${max}`);
    return v;
  },
  only(settings: Record<string, unknown>, fields: string[]): void {
    for (const key of Object.keys(settings)) if (!fields.includes(key)) fail('ROTATOR_UNAVAILABLE', `settings.${key} is not a setting of this rotator (known: ${fields.join(', ')})`);
  },
};

/** A rehearsal sandbox for rotators whose source is Keyhold alone: nothing outside to copy. */
export const noSandbox: Rotator['sandbox'] = async (rc) => ({ settings: rc.settings, currentState: rc.currentState, current: rc.current, cleanup: async () => {} });
