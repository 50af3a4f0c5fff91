import type { Recipient } from './notifier.ts';

/**
 * The SMTP channel's port to people's addresses: the e-mail addresses of the people the non-`email`
 * recipients of a notification name, in its tenant. Whoever holds the directory implements it; the
 * notifications module does no database access. Addresses are personal data: a channel puts them on
 * the envelope, never in a header other recipients read, a log line or an error.
 */
export interface RecipientResolver {
  /** The distinct addresses of these recipients' people in `tenantId`; people without one are left out (not an error). */
  addressesOf(tenantId: string, recipients: readonly Recipient[]): Promise<string[]>;
}

/** What the resolver needs to know of a tenant's people: three lookups, each scoped to the tenant. */
export interface PeopleDirectory {
  /** Addresses of the tenant's enabled users with these ids or usernames that have one. */
  addressesOf(tenantId: string, users: { ids: readonly string[]; usernames: readonly string[] }): Promise<string[]>;
  /** User ids of the owners of these machine identities of the tenant (machines without an owner give none). */
  ownersOf(tenantId: string, machineIds: readonly string[]): Promise<string[]>;
  /** Usernames of the members of these approver groups in the tenant's access policy in force. */
  membersOf(tenantId: string, groups: readonly string[]): Promise<string[]>;
}

/** Recipients resolve to nobody: the SMTP channel then mails only its `email` recipients. */
export const NO_PEOPLE: RecipientResolver = { addressesOf: async () => [] };

/**
 * Resolves `user` (the user), `machine` (its owner) and `group` (its members) recipients to the
 * addresses of enabled users of the notification's tenant; `email` recipients are the channel's own.
 * @example
 * await createRecipientResolver(directory).addressesOf(tenantId, [{ kind: 'group', id: 'leads' }, { kind: 'machine', id: runnerId }]);
 * // ['alice@example.com', 'carol@example.com'] (alice owns the runner and is a lead: once)
 */
export function createRecipientResolver(directory: PeopleDirectory): RecipientResolver {
  return {
    async addressesOf(tenantId, recipients) {
      const idsOf = (kind: Recipient['kind']) => [...new Set(recipients.filter((r) => r.kind === kind).map((r) => r.id))];
      const machines = idsOf('machine');
      const groups = idsOf('group');
      const [owners, members] = await Promise.all([
        machines.length > 0 ? directory.ownersOf(tenantId, machines) : [],
        groups.length > 0 ? directory.membersOf(tenantId, groups) : [],
      ]);
      const ids = [...new Set([...idsOf('user'), ...owners])];
      const usernames = [...new Set(members)];
      if (ids.length === 0 && usernames.length === 0) return [];
      return distinctAddresses(await directory.addressesOf(tenantId, { ids, usernames }));
    },
  };
}

/** Addresses once each, the first spelling kept (the domain is case-insensitive; most relays treat the local part so too). */
export function distinctAddresses(addresses: Iterable<string>): string[] {
  const seen = new Map<string, string>();
  for (const a of addresses) if (!seen.has(a.toLowerCase())) seen.set(a.toLowerCase(), a);
  return [...seen.values()];
}
