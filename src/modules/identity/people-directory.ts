import type { Kysely } from 'kysely';
import type { Database } from '../../storage/schema.ts';
import type { PeopleDirectory } from '../notifications/recipients.ts';

/**
 * The tenant's people as the SMTP channel's resolver needs them (notifications/recipients.ts): users'
 * addresses (enabled users only), machine identities' owners, and, through `groupMembers` (escrow's
 * access policy in force), approver groups' members. Every query is scoped by the tenant: an id,
 * username or group of another tenant finds no one.
 */
export function createPeopleDirectory(deps: {
  db: Kysely<Database>;
  groupMembers(tenantId: string, groups: readonly string[]): Promise<string[]>;
}): PeopleDirectory {
  const { db } = deps;
  return {
    async addressesOf(tenantId, users) {
      if (users.ids.length === 0 && users.usernames.length === 0) return [];
      const rows = await db.selectFrom('users').select('email').where('tenant_id', '=', tenantId)
        .where('disabled_at', 'is', null).where('email', 'is not', null)
        .where((eb) => eb.or([
          ...(users.ids.length > 0 ? [eb('id', 'in', [...users.ids])] : []),
          ...(users.usernames.length > 0 ? [eb('username', 'in', [...users.usernames])] : []),
        ]))
        .orderBy('username').execute();
      return rows.flatMap((r) => (r.email === null ? [] : [r.email]));
    },

    async ownersOf(tenantId, machineIds) {
      if (machineIds.length === 0) return [];
      const rows = await db.selectFrom('machine_identities').select('owner_user_id').where('tenant_id', '=', tenantId)
        .where('id', 'in', [...machineIds]).where('owner_user_id', 'is not', null).execute();
      return rows.flatMap((r) => (r.owner_user_id === null ? [] : [r.owner_user_id]));
    },

    membersOf: (tenantId, groups) => (groups.length === 0 ? Promise.resolve([]) : deps.groupMembers(tenantId, groups)),
  };
}
