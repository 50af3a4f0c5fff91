/** The permissions of SPEC §3, each a Cedar action. `use` resolves at run time; `reveal` shows a value to a person. */
export const ACTIONS = ['list', 'use', 'reveal', 'write', 'rotate', 'delete', 'approve', 'audit:read', 'admin', 'export'] as const;
export type Action = (typeof ACTIONS)[number];

/** The built-in roles; each is a policy in builtin.cedar. */
export const ROLES = ['viewer', 'builder', 'revealer', 'secret-admin', 'rotation-operator', 'approver', 'auditor', 'tenant-admin'] as const;
export type Role = (typeof ROLES)[number];

/** Actions a person may take only with a second factor verified within the step-up window. */
export const STEP_UP_ACTIONS: readonly Action[] = ['reveal', 'approve', 'rotate', 'admin'];

/** Actions that apply to a secret; the others apply to the tenant as a whole. */
export const SECRET_ACTIONS: readonly Action[] = ['list', 'use', 'reveal', 'write', 'rotate', 'delete', 'approve'];

export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}
