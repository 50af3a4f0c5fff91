import type { KeyObject } from 'node:crypto';
import { fail, isKeyholdError } from '../errors/index.ts';
import { randomKey, wipe } from './bytes.ts';
import { aeadOpenPrepared, headerAndAad, toKeyObject } from './aead.ts';
import { kekVersionOf, openValue as openEnvelope, rewrapDek, sealValue, unwrapDek, valueAad, type SealedValue, type VersionBinding } from './envelope.ts';
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
  /**
   * Generates KEK bytes for a tenant version and returns them wrapped by the root key. Caches
   * nothing: the key is used once read back from the store, so a transaction that stores it and
   * rolls back leaves no key that another node's KEK of the same version would be mistaken for.
   */
  newWrappedKek(tenantId: string, version: number): Buffer;
  /**
   * Loads the tenant's current KEK and returns a synchronous sealer. Callers get it before opening
   * a transaction (SQLite has one connection: loading a key inside a transaction would wait on itself).
   */
  sealerFor(tenantId: string): Promise<Sealer>;
  openValue(binding: VersionBinding, ciphertext: Uint8Array, wrappedDek: Uint8Array): Promise<Buffer>;
  /**
   * openValue when its data key is cached with this exact wrapped-DEK object and binding (the hot
   * read of a cached row): the plaintext without a promise, or undefined (then call openValue).
   */
  openCached(binding: VersionBinding, ciphertext: Uint8Array, wrappedDek: Uint8Array): Buffer | undefined;
  /** Loads every usable KEK of the tenant; the rewrapper moves a DEK to the current KEK, or returns null if it is there. */
  rewrapperFor(tenantId: string): Promise<(binding: VersionBinding, wrappedDek: Uint8Array) => { wrappedDek: Buffer; kekVersion: number } | null>;
  /**
   * Loads every usable KEK of the tenant; the resealer opens a value and seals it again under a
   * fresh DEK wrapped by the current KEK (the re-encrypt after a suspected key compromise).
   */
  resealerFor(tenantId: string): Promise<(binding: VersionBinding, ciphertext: Uint8Array, wrappedDek: Uint8Array) => SealedValue>;
  /**
   * The periodic self-test (SPEC §2), per KEK version still usable: unwraps the stored KEK afresh
   * with the root key, seals a random canary under it and opens it with the key this process
   * holds (if it holds one; it caches none). A failure means a restart would not read that tenant's
   * values (or reads them wrongly); a version retired while the test ran is left out.
   */
  selfTest(tenantId: string): Promise<KekCheck[]>;
  /**
   * Drops what outlived its bound: expired data keys, and the KEKs and key state of every tenant
   * whose state this process has not re-read within the data-key lifetime, so a version retired on
   * another node leaves memory here too, even for a tenant idle here. Called on a timer.
   */
  sweep(): void;
  /** How much unwrapped key material this process holds now (diagnostics and tests). */
  held(): { keks: number; deks: number };
  /** Drops a tenant's cached data keys (after versions are destroyed: a shredded key must not linger). */
  forgetDeks(tenantId: string): void;
  /** Forgets cached state for a tenant (after rotate/rewrap, or a change seen from another node). */
  invalidate(tenantId: string): void;
  /** Drops every cached key: called on seal. */
  purge(): void;
}

/** One KEK version's self-test: a stable error code when it failed. */
export interface KekCheck {
  version: number;
  ok: boolean;
  reason?: string;
}

/** Seals values under one KEK version (the tenant's current one when it was made), which it names. */
export type Sealer = ((binding: VersionBinding, plaintext: Uint8Array) => SealedValue) & { readonly kekVersion: number };

/** The KEK cache's key for one tenant's version; `tenantOfKey` reads the tenant back (any cache keyed "tenantId\0..."). */
const kekCacheKey = (tenantId: string, version: number) => `${tenantId}\u0000${version}`;
const tenantOfKey = (key: string) => key.slice(0, key.indexOf('\u0000'));

/** Drops every entry of one tenant from a cache keyed "tenantId\0...". */
function forgetTenantKeys(cache: Map<string, unknown>, tenantId: string): void {
  for (const key of cache.keys()) if (key.startsWith(`${tenantId}\u0000`)) cache.delete(key);
}

/** Bounds of the unwrapped-DEK cache (SPEC §2: memory only, bounded lifetime, purged on seal). */
export interface DekCacheOptions {
  ttlMs: number;
  maxEntries: number;
  now: () => number;
}

/**
 * Tenant KEKs, unwrapped lazily and cached as KeyObjects for the life of the unseal. Unwrapped
 * data keys are cached as KeyObjects for a bounded time, keyed by their binding and the exact
 * wrapped bytes: a tampered or moved blob never matches an entry and is authenticated afresh.
 */
export function createKeyring(deps: { store: KekStore; root: RootKeyHolder; dekCache?: DekCacheOptions }): Keyring {
  const { store, root } = deps;
  const keks = new Map<string, KeyObject>();
  // Read again once older than the data-key lifetime: a rewrap on another node raises the minimum
  // there, and this process must enforce it (and drop the retired KEKs) within that bound too.
  const states = new Map<string, { current: number; min: number; until: number }>();
  const dekCache = deps.dekCache ?? { ttlMs: 60_000, maxEntries: 10_000, now: () => Date.now() };
  const deks = new Map<string, { key: KeyObject; until: number }>();
  // The same entries again, found by the wrapped-DEK bytes object a cached sealed row hands in on
  // every read, with the value's AAD prepared: no key string, base64 or AAD built per read. Any
  // forget replaces the whole map; a miss falls back to `deks`, which decides exactly.
  let opened = new WeakMap<Uint8Array, { key: KeyObject; until: number; binding: VersionBinding; aad: Buffer }>();
  // Moves on with every purge, invalidate and forget. A load that began before the move (a read
  // awaiting the store while the server sealed, a key state read before a rotation) uses what it
  // loaded once but caches nothing: what was dropped stays dropped.
  let generation = 0;

  function purge(): void {
    generation++;
    keks.clear();
    states.clear();
    deks.clear();
    opened = new WeakMap();
  }

  function dekFor(kekKey: KeyObject, binding: VersionBinding, wrappedDek: Uint8Array, remember: boolean): { key: KeyObject; until: number } {
    const cacheKey = `${binding.tenantId}\u0000${binding.environmentId}\u0000${binding.secretId}\u0000${binding.version}\u0000${Buffer.from(wrappedDek.buffer, wrappedDek.byteOffset, wrappedDek.byteLength).toString('base64')}`;
    const now = dekCache.now();
    const hit = deks.get(cacheKey);
    if (hit && hit.until > now) return hit;
    const raw = unwrapDek(kekKey, binding, wrappedDek);
    try {
      const entry = { key: toKeyObject(raw), until: now + dekCache.ttlMs };
      if (!remember) return entry;
      if (deks.size >= dekCache.maxEntries) {
        deks.delete(deks.keys().next().value!);
        opened = new WeakMap(); // it may hold the evicted key: the bound applies to both
      }
      deks.set(cacheKey, entry);
      return entry;
    } finally {
      wipe(raw);
    }
  }

  const sameBinding = (a: VersionBinding, b: VersionBinding) =>
    a.version === b.version && a.secretId === b.secretId && a.environmentId === b.environmentId && a.tenantId === b.tenantId;

  /** Opens the value if its data key is cached for this wrapped-DEK object and binding; undefined otherwise. */
  function openWithCachedKey(binding: VersionBinding, ciphertext: Uint8Array, wrappedDek: Uint8Array): Buffer | undefined {
    const fast = opened.get(wrappedDek);
    return fast && fast.until > dekCache.now() && sameBinding(fast.binding, binding) ? aeadOpenPrepared(fast.key, ciphertext, fast.aad) : undefined;
  }
  root.onSeal(purge);

  /** The tenant's key state if cached and fresh; undefined otherwise (then `state`). */
  function freshState(tenantId: string): { current: number; min: number } | undefined {
    const s = states.get(tenantId);
    return s && s.until > dekCache.now() ? s : undefined;
  }

  async function state(tenantId: string): Promise<{ current: number; min: number }> {
    const cached = freshState(tenantId);
    if (cached) return cached;
    const fence = generation;
    const loaded = (await store.loadState(tenantId)) ?? fail('TENANT_NOT_FOUND', 'tenant not found');
    if (fence !== generation) return loaded;
    states.set(tenantId, { ...loaded, until: dekCache.now() + dekCache.ttlMs });
    // KEKs below the minimum are retired: their material goes from memory as it went from the store.
    for (const key of keks.keys()) {
      const [t, v] = key.split('\u0000');
      if (t === tenantId && Number(v) < loaded.min) keks.delete(key);
    }
    return loaded;
  }

  async function kek(tenantId: string, version: number): Promise<KeyObject> {
    const cacheKey = kekCacheKey(tenantId, version);
    const cached = keks.get(cacheKey);
    if (cached) return cached;
    root.rootKey();
    const fence = generation;
    const wrapped = await store.loadWrappedKek(tenantId, version);
    // Unsealed still? A seal while the store answered has dropped the root key: nothing is unwrapped after it.
    const rootKey = root.rootKey();
    if (!wrapped) fail('KEY_VERSION_RETIRED', `key version ${version} is retired or missing`);
    const raw = unwrapKek(rootKey, tenantId, version, wrapped);
    try {
      const key = toKeyObject(raw);
      if (fence === generation) keks.set(cacheKey, key);
      return key;
    } finally {
      wipe(raw);
    }
  }

  /** Too short to name a KEK version: cut or corrupted, which is not a key that was retired. */
  function malformed(): never {
    return fail('INTEGRITY_FAILURE', 'stored wrapped data key is malformed');
  }

  /**
   * A KEK version that is missing and above the tenant's current one (read afresh: another node may
   * have rotated) was never issued, so the wrapped key's header was altered: INTEGRITY_FAILURE, the
   * code that says "treat it as an incident". A missing version below it stays KEY_VERSION_RETIRED.
   */
  async function neverIssued(tenantId: string, version: number, err: unknown): Promise<never> {
    if (isKeyholdError(err) && err.code === 'KEY_VERSION_RETIRED') {
      const now = await store.loadState(tenantId);
      if (now && version > now.current) fail('INTEGRITY_FAILURE', 'stored wrapped data key names a key version that was never issued');
    }
    throw err;
  }

  /** Every KEK of the tenant a data key may still be under (minimum to current), loaded together. */
  async function usableKeks(tenantId: string): Promise<{ current: number; usable: Map<number, KeyObject> }> {
    let { current, min } = await state(tenantId);
    for (;;) {
      try {
        const usable = new Map<number, KeyObject>();
        for (let v = min; v <= current; v++) usable.set(v, await kek(tenantId, v));
        return { current, usable };
      } catch (err) {
        if (!isKeyholdError(err) || err.code !== 'KEY_VERSION_RETIRED') throw err;
        // Counted usable by the state read, yet gone: a rewrap (here or on another node) retired it
        // since, raising the minimum in the same commit. Go on from the state as it is now. Gone while
        // the minimum stayed put, it was not retired but lost: that stays an error.
        const now = (await store.loadState(tenantId)) ?? fail('TENANT_NOT_FOUND', 'tenant not found');
        if (now.min <= min) throw err;
        states.delete(tenantId);
        ({ current, min } = now);
      }
    }
  }

  return {
    newWrappedKek(tenantId, version) {
      const raw = randomKey(32);
      try {
        return wrapKek(root.rootKey(), tenantId, version, raw);
      } finally {
        wipe(raw);
      }
    },

    async sealerFor(tenantId) {
      root.rootKey(); // refuse with SEALED before touching anything
      const { current } = await state(tenantId);
      const key = await kek(tenantId, current);
      return Object.assign((binding: VersionBinding, plaintext: Uint8Array) => sealValue(key, current, binding, plaintext), { kekVersion: current });
    },

    openCached(binding, ciphertext, wrappedDek) {
      root.rootKey();
      const s = freshState(binding.tenantId);
      if (!s || kekVersionOf(wrappedDek) < s.min) return undefined;
      return openWithCachedKey(binding, ciphertext, wrappedDek);
    },

    async openValue(binding, ciphertext, wrappedDek) {
      root.rootKey();
      const fence = generation;
      const version = kekVersionOf(wrappedDek);
      if (version < 0) malformed();
      const { min } = freshState(binding.tenantId) ?? (await state(binding.tenantId));
      if (version < min) fail('KEY_VERSION_RETIRED', `value is wrapped under retired key version ${version}`);
      const cached = openWithCachedKey(binding, ciphertext, wrappedDek);
      if (cached) return cached;
      const kekKey = await kek(binding.tenantId, version).catch((err: unknown) => neverIssued(binding.tenantId, version, err));
      root.rootKey();
      const remember = fence === generation;
      const dek = dekFor(kekKey, binding, wrappedDek, remember);
      const aad = headerAndAad(valueAad(binding));
      if (remember) opened.set(wrappedDek, { ...dek, binding: { ...binding }, aad });
      return aeadOpenPrepared(dek.key, ciphertext, aad);
    },

    async rewrapperFor(tenantId) {
      const { current, usable } = await usableKeks(tenantId);
      const to = usable.get(current)!;
      return (binding, wrappedDek) => {
        const from = kekVersionOf(wrappedDek);
        if (from < 0) malformed();
        if (from >= current) return null; // there already, or under a version rotated to since (nothing to move)
        const fromKey = usable.get(from) ?? fail('KEY_VERSION_RETIRED', `value is wrapped under retired key version ${from}`);
        return { wrappedDek: rewrapDek(fromKey, to, current, binding, wrappedDek), kekVersion: current };
      };
    },

    async resealerFor(tenantId) {
      const { current, usable } = await usableKeks(tenantId);
      const to = usable.get(current)!;
      return (binding, ciphertext, wrappedDek) => {
        const from = kekVersionOf(wrappedDek);
        if (from < 0) malformed();
        // Under a version rotated to since this loaded: a key operation is racing this one.
        if (from > current) fail('KEY_OPERATION_CONFLICT', `the tenant's key was rotated to version ${from} meanwhile; run the re-encrypt again`);
        const fromKey = usable.get(from) ?? fail('KEY_VERSION_RETIRED', `value is wrapped under retired key version ${from}`);
        const plaintext = openEnvelope(fromKey, binding, ciphertext, wrappedDek);
        try {
          return sealValue(to, current, binding, plaintext);
        } finally {
          wipe(plaintext);
        }
      };
    },

    async selfTest(tenantId) {
      root.rootKey(); // refuse with SEALED before touching anything
      const { current, min } = (await store.loadState(tenantId)) ?? fail('TENANT_NOT_FOUND', 'tenant not found');
      const checks: KekCheck[] = [];
      for (let version = min; version <= current; version++) {
        try {
          const wrapped = await store.loadWrappedKek(tenantId, version);
          if (!wrapped) {
            // Gone since the state was read: a rewrap or re-encrypt (here or on another node) retired it,
            // raising the minimum in the same commit. No value needs it now: not a failure, nor tested.
            const now = await store.loadState(tenantId);
            if (now && version < now.min) continue;
            fail('KEY_VERSION_RETIRED', `key version ${version} is missing`);
          }
          const raw = unwrapKek(root.rootKey(), tenantId, version, wrapped);
          const canary = randomKey(32);
          try {
            const fresh = toKeyObject(raw);
            const binding = { tenantId, environmentId: 'self-test', secretId: 'canary', version };
            const sealed = sealValue(fresh, version, binding, canary);
            // Opened with the key this process holds, if it holds one: a key it does not hold it would load
            // from the same stored bytes. Never loaded into the cache here, or every node would keep every
            // tenant's KEKs for the life of the unseal.
            const opened = openEnvelope(keks.get(kekCacheKey(tenantId, version)) ?? fresh, binding, sealed.ciphertext, sealed.wrappedDek);
            if (!opened.equals(canary)) fail('INTEGRITY_FAILURE', 'the canary opened to other bytes');
            wipe(opened);
          } finally {
            wipe(raw);
            wipe(canary);
          }
          checks.push({ version, ok: true });
        } catch (err) {
          if (isKeyholdError(err) && err.code === 'SEALED') throw err; // not a key failure: nothing can be tested while sealed
          checks.push({ version, ok: false, reason: isKeyholdError(err) ? err.code : 'INTERNAL' });
        }
      }
      return checks;
    },

    sweep() {
      const now = dekCache.now();
      let expired = false;
      for (const [key, entry] of deks) {
        if (entry.until > now) continue;
        deks.delete(key);
        expired = true;
      }
      // `opened` holds the same keys but cannot be walked: replaced, it lets them go.
      if (expired) opened = new WeakMap();
      for (const [tenantId, s] of states) if (s.until <= now) states.delete(tenantId);
      for (const key of keks.keys()) if (!states.has(tenantOfKey(key))) keks.delete(key);
    },

    held() {
      return { keks: keks.size, deks: deks.size };
    },

    forgetDeks(tenantId) {
      generation++;
      forgetTenantKeys(deks, tenantId);
      opened = new WeakMap();
    },

    invalidate(tenantId) {
      generation++;
      states.delete(tenantId);
      forgetTenantKeys(deks, tenantId);
      forgetTenantKeys(keks, tenantId);
      opened = new WeakMap();
    },

    purge,
  };
}
