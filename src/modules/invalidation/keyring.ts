import type { Keyring } from '../../crypto/keyring.ts';
import type { InvalidationBus } from './bus.ts';

/**
 * The keyring with its tenant-wide drops told to the other nodes: after a KEK rotation or rewrap
 * (`invalidate`) and after versions are destroyed (`forgetDeks`: a shredded data key must not
 * linger), every node drops the tenant's unwrapped keys at once rather than when their cache
 * lifetime ends. After a gap (messages may have been missed) a node drops every key it holds; they
 * are unwrapped again from the database on next use.
 */
export function sharedKeyring(keyring: Keyring, peers: Pick<InvalidationBus, 'publish' | 'subscribe'>): Keyring {
  peers.subscribe({
    onMessage(m) {
      if (m.kind === 'keys') keyring.invalidate(m.tenantId);
    },
    onGap() {
      keyring.purge();
    },
  });
  return {
    ...keyring,
    invalidate(tenantId) {
      keyring.invalidate(tenantId);
      peers.publish({ kind: 'keys', tenantId });
    },
    forgetDeks(tenantId) {
      keyring.forgetDeks(tenantId);
      peers.publish({ kind: 'keys', tenantId });
    },
  };
}
