import { auditFrom } from '../audit/audit-log.ts';
import type { Actor, RequestContext } from '../shared/context.ts';

/** Where a request to sign in (login, token exchange) comes from: its context before it has an actor. */
export type RequestSource = Omit<RequestContext, 'actor' | 'sourceIp'> & { sourceIp: string };

/** auditFrom reads only the actor's credential id into the context; a refused sign-in has none. */
const NO_CREDENTIAL: Actor = { type: 'system', id: '', name: '' };

/**
 * The context of a sign-in event: the fields `auditFrom` gives every other event (request id,
 * source address, user agent, and the credential once one is issued), then `extra`. Built by
 * `auditFrom` itself, so the two cannot drift apart.
 */
export function signInContext(source: RequestSource, extra: Record<string, string>, credentialId?: string): Record<string, string> {
  const actor = credentialId === undefined ? NO_CREDENTIAL : { ...NO_CREDENTIAL, credentialId };
  return { ...auditFrom({ ...source, tenantId: null, actor }).context, ...extra };
}
