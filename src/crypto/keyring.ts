import type { KeyObject } from 'node:crypto';
import { fail } from '../errors/index.ts';
import { randomKey, wipe } from './bytes.ts';
import { toKeyObject } from './aead.ts';
import { kekVersionOf, openValue, rewrapDek, sealValue, type SealedValue, type VersionBinding } from './envelope.ts';
import { unwrapKek, wrapKek } from './root/root-key.ts';

/** Where tenant KEKs are stored (wrapped by the root key). */
export interface KekStore {
  loadState(tenantId: string): Promise<{ current: number; min: number } | null>;
  loadWrappedKek(tenantId: string, version: number): Promise<Uint8Array | null>;
}

/** The unsealed root key, or SEALED. */
export interface RootKeyHolder {
  rootKey(): KeyObject;
  onSeal(listener: () => void): void;
}

export interface Keyring {
  /** Generates KEK bytes for a tenant version and returns them wrapped by the root key. */
  newWrappedKek(tenantId: string, version: number): Buffer;
  /**
   * Loads the tenant's current KEK and returns a synchronous sealer. Callers get it before opening
   * a transaction (SQLite has one connection: loading a key inside a transaction would wait on itself).
   */
  sealerFor(tenantId: string): Promise<(binding: VersionBinding, plaintext: Uint8Array) => SealedValue>;
  openValue(binding: VersionBinding, ciphertext: Uint8Array, wrappedDek: Uint8Array): Promise<Buffer>;
  /** Loads every usable KEK of the tenant; the rewrapper moves a DEK to the current KEK, or returns null if it is there. */
  rewrapperFor(tenantId: string): Promise<(binding: VersionBinding, wrappedDek: Uint8Array) => { wrappedDek: Buffer; kekVersion: number } | null>;
  /** Forgets cached state for a tenant (after rotate/rewrap, or a change seen from another node). */
  invalidate(tenantId: string): void;
  /** Drops every cached key: called on seal. */
  purge(): void;
}

/**
 * Tenant KEKs, unwrapped lazily and cached as KeyObjects for the life of the unseal.
 * Data keys are never cached: each is unwrapped, used once and wiped.
 */
export function createKeyring(deps: { store: KekStore; root: RootKeyHolder }): Keyring {
  const { store, root } = deps;
  const keks = new Map<string, KeyObject>();
  const states = new Map<string, { current: number; min: number }>();

  function purge(): void {
    keks.clear();
    states.clear();
  }
  root.onSeal(purge);

  async function state(tenantId: string): Promise<{ current: number; min: number }> {
    let s = states.get(tenantId);
    if (!s) {
      s = (await store.loadState(tenantId)) ?? fail('TENANT_NOT_FOUND', 'tenant not found');
      states.set(tenantId, s);
    }
    return s;
  }

  async function kek(tenantId: string, version: number): Promise<KeyObject> {
    const cacheKey = `${tenantId}\u0000${version}`;
    const cached = keks.get(cacheKey);
    if (cached) return cached;
    const rootKey = root.rootKey();
    const wrapped = await store.loadWrappedKek(tenantId, version);
    if (!wrapped) fail('KEY_VERSION_RETIRED', `key version ${version} is retired or missing`);
    const raw = unwrapKek(rootKey, tenantId, version, wrapped);
    try {
      const key = toKeyObject(raw);
      keks.set(cacheKey, key);
      return key;
    } finally {
      wipe(raw);
    }
  }

  return {
    newWrappedKek(tenantId, version) {
      const raw = randomKey(32);
      try {
        const wrapped = wrapKek(root.rootKey(), tenantId, version, raw);
        keks.set(`${tenantId}\u0000${version}`, toKeyObject(raw));
        return wrapped;
      } finally {
        wipe(raw);
      }
    },

    async sealerFor(tenantId) {
      root.rootKey(); // refuse with SEALED before touching anything
      const { current } = await state(tenantId);
      const key = await kek(tenantId, current);
      return (binding, plaintext) => sealValue(key, current, binding, plaintext);
    },

    async openValue(binding, ciphertext, wrappedDek) {
      root.rootKey();
      const version = kekVersionOf(wrappedDek);
      const { min } = await state(binding.tenantId);
      if (version < min) fail('KEY_VERSION_RETIRED', `value is wrapped under retired key version ${version}`);
      return openValue(await kek(binding.tenantId, version), binding, ciphertext, wrappedDek);
    },

    async rewrapperFor(tenantId) {
      const { current, min } = await state(tenantId);
      const usable = new Map<number, KeyObject>();
      for (let v = min; v <= current; v++) usable.set(v, await kek(tenantId, v));
      const to = usable.get(current)!;
      return (binding, wrappedDek) => {
        const from = kekVersionOf(wrappedDek);
        if (from === current) return null;
        const fromKey = usable.get(from) ?? fail('KEY_VERSION_RETIRED', `value is wrapped under retired key version ${from}`);
        return { wrappedDek: rewrapDek(fromKey, to, current, binding, wrappedDek), kekVersion: current };
      };
    },

    invalidate(tenantId) {
      states.delete(tenantId);
      for (const key of keks.keys()) if (key.startsWith(`${tenantId}\u0000`)) keks.delete(key);
    },

    purge,
  };
}
