import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KeyObject } from 'node:crypto';
import { toKeyObject } from './aead.ts';
import { randomKey } from './bytes.ts';
import { kekVersionOf, unwrapDek, valueAad, type VersionBinding } from './envelope.ts';
import { aeadOpen } from './aead.ts';
import { unwrapKek } from './root/root-key.ts';
import { createKeyring } from './keyring.ts';
import { fail, KeyholdError } from '../errors/index.ts';

const TENANT = 't1';
const binding: VersionBinding = { tenantId: TENANT, environmentId: 'e-prod', secretId: 's1', version: 3 };
const TTL = 60_000;

/** A keyring over an in-memory KEK store and a root key that can be sealed, with a fake clock. */
async function setup() {
  let root: KeyObject | null = toKeyObject(randomKey());
  const sealListeners: Array<() => void> = [];
  const state = { current: 1, min: 1 };
  const wrapped = new Map<number, Uint8Array>();
  let now = 1_000_000;
  // Each load reads the store when it starts, then waits on the test's hold (if any) before answering.
  let stateHold = async () => {};
  let kekHold = async () => {};
  const keyring = createKeyring({
    store: {
      loadState: async () => {
        const snapshot = { ...state };
        await stateHold();
        return snapshot;
      },
      loadWrappedKek: async (_t, v) => {
        const found = wrapped.get(v) ?? null;
        await kekHold();
        return found;
      },
    },
    root: { rootKey: () => root ?? fail('SEALED', 'sealed'), onSeal: (l) => void sealListeners.push(l) },
    dekCache: { ttlMs: TTL, maxEntries: 100, now: () => now },
  });
  wrapped.set(1, keyring.newWrappedKek(TENANT, 1));
  const sealed = (await keyring.sealerFor(TENANT))(binding, Buffer.from('sk_live_0123456789abcdef'));
  const rootKey = root;
  return {
    keyring, state, sealed,
    advance: (ms: number) => void (now += ms),
    seal: () => { root = null; for (const l of sealListeners) l(); },
    unseal: () => void (root = rootKey),
    forgetKek: (version: number) => void wrapped.delete(version),
    holdState: (hold: () => Promise<void>) => void (stateHold = hold),
    holdKek: (hold: () => Promise<void>) => void (kekHold = hold),
    /** The raw KEK of a version, as an attacker who took it (and the root key) would hold it. */
    stolenKek: (version: number) => toKeyObject(unwrapKek(rootKey!, TENANT, version, wrapped.get(version)!)),
    rotate: () => {
      wrapped.set(state.current + 1, keyring.newWrappedKek(TENANT, state.current + 1));
      state.current++;
      keyring.invalidate(TENANT);
    },
  };
}

const code = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof KeyholdError ? err.code : String(err);
  }
};

/** Flips a bit of the wrapped DEK in place: only an unwrap from the bytes (not a cached key) notices. */
const tamperInPlace = (wrappedDek: Uint8Array) => void (wrappedDek[wrappedDek.byteLength - 1]! ^= 1);

test('a cached data key opens its value again, and only for the binding it was unwrapped for', async () => {
  const { keyring, sealed } = await setup();
  assert.equal((await keyring.openValue(binding, sealed.ciphertext, sealed.wrappedDek)).toString(), 'sk_live_0123456789abcdef');
  assert.equal((await keyring.openValue({ ...binding }, sealed.ciphertext, sealed.wrappedDek)).toString(), 'sk_live_0123456789abcdef');
  for (const moved of [{ version: 4 }, { secretId: 's2' }, { environmentId: 'e-dev' }, { tenantId: 't2' }]) {
    assert.notEqual(await code(keyring.openValue({ ...binding, ...moved }, sealed.ciphertext, sealed.wrappedDek)), 'ok', JSON.stringify(moved));
  }
});

test('once the minimum key version passes a value\'s key, its cached data key no longer opens it', async () => {
  const { keyring, state, sealed } = await setup();
  await keyring.openValue(binding, sealed.ciphertext, sealed.wrappedDek);
  state.min = 2;
  keyring.invalidate(TENANT);
  assert.equal(await code(keyring.openValue(binding, sealed.ciphertext, sealed.wrappedDek)), 'KEY_VERSION_RETIRED');
});

test('sealing drops cached data keys: reads are refused, and after unsealing the key is unwrapped again', async () => {
  const { keyring, sealed, seal, unseal } = await setup();
  await keyring.openValue(binding, sealed.ciphertext, sealed.wrappedDek);
  seal();
  assert.equal(await code(keyring.openValue(binding, sealed.ciphertext, sealed.wrappedDek)), 'SEALED');
  unseal();
  tamperInPlace(sealed.wrappedDek);
  assert.equal(await code(keyring.openValue(binding, sealed.ciphertext, sealed.wrappedDek)), 'INTEGRITY_FAILURE');
});

test('a cached data key lives no longer than the cache lifetime, and forgetting a tenant\'s keys ends it at once', async () => {
  const expiring = await setup();
  await expiring.keyring.openValue(binding, expiring.sealed.ciphertext, expiring.sealed.wrappedDek);
  expiring.advance(TTL + 1);
  tamperInPlace(expiring.sealed.wrappedDek);
  assert.equal(await code(expiring.keyring.openValue(binding, expiring.sealed.ciphertext, expiring.sealed.wrappedDek)), 'INTEGRITY_FAILURE');

  const forgotten = await setup();
  await forgotten.keyring.openValue(binding, forgotten.sealed.ciphertext, forgotten.sealed.wrappedDek);
  forgotten.keyring.forgetDeks(TENANT);
  tamperInPlace(forgotten.sealed.wrappedDek);
  assert.equal(await code(forgotten.keyring.openValue(binding, forgotten.sealed.ciphertext, forgotten.sealed.wrappedDek)), 'INTEGRITY_FAILURE');
});

/** A gate the fake store's loads wait on: the moment a load is in flight while something else happens. */
function gate() {
  let open!: () => void;
  let entered!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  const reached = new Promise<void>((r) => (entered = r));
  return { wait: () => (entered(), opened), reached, open };
}

test('a read in flight across a seal does not put key material back: it is refused, and nothing opens while sealed', async () => {
  const t = await setup();
  t.keyring.invalidate(TENANT); // the KEK must be loaded from the store again
  const held = gate();
  t.holdKek(held.wait);
  const read = code(t.keyring.openValue(binding, t.sealed.ciphertext, t.sealed.wrappedDek));
  await held.reached;
  t.seal();
  held.open();
  assert.equal(await read, 'SEALED');
  assert.equal(await code(t.keyring.rewrapperFor(TENANT)), 'SEALED', 'no tenant KEK was cached after the seal');
});

test('a key state loaded before an invalidate is not kept after it: the next seal and rewrap use the new KEK version', async () => {
  const t = await setup();
  t.keyring.invalidate(TENANT);
  const held = gate();
  t.holdState(held.wait);
  const early = t.keyring.sealerFor(TENANT); // reads the state as it is now (current 1), and is held there
  await held.reached;
  t.rotate(); // what keys.rotate does: version 2 committed, then this process's cache invalidated
  held.open();
  await early;
  assert.equal((await t.keyring.sealerFor(TENANT)).kekVersion, 2);
  assert.equal((await t.keyring.rewrapperFor(TENANT))(binding, t.sealed.wrappedDek)?.kekVersion, 2);
});

test('a minimum version raised elsewhere (another node\'s rewrap) is enforced here within the cache lifetime, and the retired KEK dropped', async () => {
  const t = await setup();
  await t.keyring.openValue(binding, t.sealed.ciphertext, t.sealed.wrappedDek); // state, KEK and data key all cached
  t.state.current = 2;
  t.state.min = 2; // committed by another process: nothing here is invalidated
  t.advance(TTL + 1);
  assert.equal(await code(t.keyring.openValue(binding, t.sealed.ciphertext, t.sealed.wrappedDek)), 'KEY_VERSION_RETIRED');
  assert.equal(t.keyring.openCached(binding, t.sealed.ciphertext, t.sealed.wrappedDek), undefined);
  // Were the minimum to fall back (a restored database), version 1 would have to be unwrapped again from the store.
  t.state.min = 1;
  t.forgetKek(1);
  t.advance(TTL + 1);
  assert.equal(await code(t.keyring.openValue(binding, t.sealed.ciphertext, t.sealed.wrappedDek)), 'KEY_VERSION_RETIRED');
});

test('a data key cached after its tenant\'s state opens nothing from memory once a re-read state shows its KEK version retired elsewhere', async () => {
  const t = await setup(); // the key state is cached now
  const other = { ...binding, secretId: 's2' };
  const otherSealed = (await t.keyring.sealerFor(TENANT))(other, Buffer.from('sk_live_other'));
  t.advance(TTL / 2);
  await t.keyring.openValue(binding, t.sealed.ciphertext, t.sealed.wrappedDek); // its data key cached until 1.5 TTL
  t.state.current = 2;
  t.state.min = 2; // another node's rewrap: nothing here is invalidated
  t.advance(TTL / 2 + 1); // the state is stale, the data key is not
  assert.equal(await code(t.keyring.openValue(other, otherSealed.ciphertext, otherSealed.wrappedDek)), 'KEY_VERSION_RETIRED'); // re-reads the state
  assert.equal(t.keyring.openCached(binding, t.sealed.ciphertext, t.sealed.wrappedDek), undefined, 'the cached data key under version 1 is not used');
  assert.equal(await code(t.keyring.openValue(binding, t.sealed.ciphertext, t.sealed.wrappedDek)), 'KEY_VERSION_RETIRED');
});

test('a rewrapper whose KEK a concurrent rewrap retired after the key state was read goes on from the new state, not KEY_VERSION_RETIRED', async () => {
  const t = await setup();
  t.rotate(); // version 2 current, 1 still usable
  const held = gate();
  t.holdState(held.wait);
  const loading = t.keyring.rewrapperFor(TENANT); // reads {current 2, min 1}, and is held there
  await held.reached;
  // Another node's rewrap commits: every data key at 2, the minimum raised, KEK 1 deleted. This process is not told.
  t.state.min = 2;
  t.forgetKek(1);
  held.open();
  const rewrap = await loading;
  const at2 = (await t.keyring.sealerFor(TENANT))(binding, Buffer.from('sk_live_0123456789abcdef'));
  assert.equal(rewrap(binding, at2.wrappedDek), null, 'a key at the current version stays');
  // A data key still under the retired version has no newer copy to come from: that is still refused.
  assert.throws(() => rewrap(binding, t.sealed.wrappedDek), { code: 'KEY_VERSION_RETIRED' });
});

test('a KEK missing although the minimum version never moved is not a race: the rewrapper is refused with KEY_VERSION_RETIRED', async () => {
  const t = await setup();
  t.rotate();
  t.forgetKek(1);
  assert.equal(await code(t.keyring.rewrapperFor(TENANT)), 'KEY_VERSION_RETIRED');
});

test('a resealer opens a value under any usable KEK and seals it under a fresh data key and the current KEK; the old data key opens nothing new', async () => {
  const { keyring, sealed, rotate, stolenKek } = await setup();
  const stolenDek = toKeyObject(unwrapDek(stolenKek(1), binding, sealed.wrappedDek));
  rotate();
  const resealed = (await keyring.resealerFor(TENANT))(binding, sealed.ciphertext, sealed.wrappedDek);
  assert.equal(resealed.kekVersion, 2);
  assert.equal(kekVersionOf(resealed.wrappedDek), 2);
  assert.equal(resealed.ciphertext.equals(sealed.ciphertext), false);
  assert.equal((await keyring.openValue(binding, resealed.ciphertext, resealed.wrappedDek)).toString(), 'sk_live_0123456789abcdef');
  assert.equal(aeadOpen(stolenDek, sealed.ciphertext, valueAad(binding)).toString(), 'sk_live_0123456789abcdef', 'the stolen key did open the old blob');
  assert.throws(() => aeadOpen(stolenDek, resealed.ciphertext, valueAad(binding)), { code: 'INTEGRITY_FAILURE' }, 'the stolen data key opens nothing resealed');
  assert.throws(() => unwrapDek(stolenKek(1), binding, resealed.wrappedDek), { code: 'INTEGRITY_FAILURE' }, 'nor does the old KEK unwrap the new data key');
  // A value already under the current KEK is resealed too: its data key may be one a rewrap moved there.
  const again = (await keyring.resealerFor(TENANT))(binding, resealed.ciphertext, resealed.wrappedDek);
  assert.equal(again.wrappedDek.equals(resealed.wrappedDek), false);
});

test('a resealer refuses a tampered value (INTEGRITY_FAILURE) and one under a KEK rotated to after it loaded (KEY_OPERATION_CONFLICT)', async () => {
  const { keyring, sealed, rotate } = await setup();
  const reseal = await keyring.resealerFor(TENANT);
  const tampered = Buffer.from(sealed.ciphertext);
  tampered[tampered.length - 1]! ^= 1;
  assert.throws(() => reseal(binding, tampered, sealed.wrappedDek), { code: 'INTEGRITY_FAILURE' });
  rotate();
  const newer = (await keyring.sealerFor(TENANT))(binding, Buffer.from('written after the rotation'));
  assert.throws(() => reseal(binding, newer.ciphertext, newer.wrappedDek), { code: 'KEY_OPERATION_CONFLICT' });
});

test('a sweep drops expired data keys and the KEKs of tenants not re-read within the lifetime; what is still fresh stays', async () => {
  const { keyring, sealed, advance } = await setup();
  await keyring.openValue(binding, sealed.ciphertext, sealed.wrappedDek);
  assert.deepEqual(keyring.held(), { keks: 1, deks: 1 });
  keyring.sweep();
  assert.deepEqual(keyring.held(), { keks: 1, deks: 1 }, 'nothing is due yet');
  advance(TTL);
  keyring.sweep();
  assert.deepEqual(keyring.held(), { keks: 0, deks: 0 });
  assert.equal(keyring.openCached(binding, sealed.ciphertext, sealed.wrappedDek), undefined);
  assert.equal((await keyring.openValue(binding, sealed.ciphertext, sealed.wrappedDek)).toString(), 'sk_live_0123456789abcdef', 'loaded again on use');
  assert.deepEqual(keyring.held(), { keks: 1, deks: 1 });
});

test('a KEK version retired on another node leaves this one at the next sweep after the lifetime, though this node never used the tenant again', async () => {
  const { keyring, state, sealed, advance, rotate, forgetKek } = await setup();
  rotate();
  await keyring.rewrapperFor(TENANT); // holds versions 1 and 2
  assert.equal(keyring.held().keks, 2);
  // Another node rewraps and retires version 1; this node sees nothing of it and serves no request.
  state.min = 2;
  forgetKek(1);
  advance(TTL);
  keyring.sweep();
  assert.equal(keyring.held().keks, 0, 'no KEK of the idle tenant is left in memory, the retired one included');
  await assert.rejects(keyring.openValue(binding, sealed.ciphertext, sealed.wrappedDek), { code: 'KEY_VERSION_RETIRED' });
});
