import { isKeyholdError, KeyholdError } from '../../errors/index.ts';
import { secretResource, type SecretService } from '../secrets/secret-service.ts';
import type { TenantContext } from '../shared/context.ts';
import type { SecretRef } from './rotators/types.ts';

/**
 * The caller may `use` every secret a rotator's settings name, in the policy's environment. The run
 * resolves them as Keyhold itself and hands them to the host the settings name, so setting a policy
 * must reach no further than the caller could reach with their own grants. A name the caller may
 * not even list is answered as a miss, exactly like one that does not exist (SECRET_NOT_FOUND; the
 * authorizer audits the denial, a true miss is audited with the name's keyed HMAC); one they may
 * list but not use is FORBIDDEN. The message names the setting, so the caller can fix the call.
 */
export async function requireUseOfRefs(
  secrets: Pick<SecretService, 'load' | 'authorize'>, ctx: TenantContext, refs: SecretRef[], environment: string,
): Promise<void> {
  for (const ref of refs) {
    try {
      const row = await secrets.load(ctx, ref.name, { auditAs: 'rotation.policy.set', environment });
      await secrets.authorize(ctx, 'use', secretResource(row), environment);
    } catch (err) {
      if (isKeyholdError(err)) throw new KeyholdError(err.code, `settings.${ref.field}: ${err.message}`, err.details ? { ...err.details } : undefined);
      throw err;
    }
  }
}

/**
 * The run-time side: `resolve` for a rotator, limited to the names its own declaration gives for
 * the stored (authorized) settings. A sandbox's or a buggy rotator's other names never resolve.
 */
export function declaredResolver(refs: SecretRef[], resolve: (name: string) => Promise<string>): (name: string) => Promise<string> {
  const allowed = new Set(refs.map((r) => r.name));
  return async (name) => {
    if (!allowed.has(name)) throw new Error('the rotator asked for a secret its settings do not declare (secretRefs); refused');
    return resolve(name);
  };
}
