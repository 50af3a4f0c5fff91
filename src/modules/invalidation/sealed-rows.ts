import type { SealedRowCache } from '../secrets/sealed-row-cache.ts';
import type { InvalidationBus } from './bus.ts';

/**
 * The sealed-row cache with its forgets told to the other nodes. Every change to a secret forgets
 * its rows here after it commits; the message names the tenant only (a secret's name is not sent:
 * any role on the database may LISTEN), so another node drops all of that tenant's cached rows, and
 * `onOtherNode` drops what else it holds of the tenant's values (its redactor).
 */
export function sharedSealedRows(rows: SealedRowCache, peers: Pick<InvalidationBus, 'publish' | 'subscribe'>, onOtherNode: (tenantId: string) => void): SealedRowCache {
  peers.subscribe({
    onMessage(m) {
      if (m.kind !== 'values') return;
      rows.forgetTenant(m.tenantId);
      onOtherNode(m.tenantId);
    },
    onGap() {
      rows.clear();
    },
  });
  return {
    ...rows,
    forgetSecret(tenantId, name) {
      rows.forgetSecret(tenantId, name);
      peers.publish({ kind: 'values', tenantId });
    },
    forgetTenant(tenantId) {
      rows.forgetTenant(tenantId);
      peers.publish({ kind: 'values', tenantId });
    },
  };
}
