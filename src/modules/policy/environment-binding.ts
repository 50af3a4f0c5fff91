import type { Actor } from '../shared/context.ts';
import type { Action } from './actions.ts';

/**
 * Whether an actor bound to one environment (an automation run's token) is asked to act outside
 * it. Such an actor acts as if every grant it has were narrowed to its environment: any other
 * environment is refused, and so is every action that names no environment (tenant
 * administration, secret-wide writes and deletes, audit reads) except `list`, because secret and
 * automation metadata are not per environment. Unbound actors are never outside.
 *
 * Checked by the authorizer before roles and policies, so no grant, escrow grant or tenant policy
 * can widen it, and no service that authorizes can forget it (SPEC §1).
 *
 * @example
 * outsideBinding({ ..., boundEnvironment: 'staging' }, 'use', 'production') // true
 * outsideBinding({ ..., boundEnvironment: 'staging' }, 'use', 'staging')    // false
 * outsideBinding({ ..., boundEnvironment: 'staging' }, 'admin', undefined)  // true
 */
export function outsideBinding(actor: Pick<Actor, 'boundEnvironment'>, action: Action, environment: string | undefined): boolean {
  const bound = actor.boundEnvironment;
  if (bound === undefined) return false;
  return environment === undefined ? action !== 'list' : environment !== bound;
}
