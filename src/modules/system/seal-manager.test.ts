import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseShare, splitRootKey } from '../../crypto/root/shamir/index.ts';
import { randomKey } from '../../crypto/bytes.ts';
import { createSealManager, type SealManager } from './seal-manager.ts';
import type { SealConfig } from './system-meta-repository.ts';

/** A seal manager over an in-memory seal config, initialised with `shares` of `threshold` and sealed. */
async function sealedManager(shares: number, threshold: number, strip?: (c: SealConfig) => SealConfig) {
  const dataDir = await mkdtemp(join(tmpdir(), 'keyhold-seal-'));
  let stored: SealConfig | null = null;
  const manager = createSealManager({ meta: { getSealConfig: async () => stored }, dataDir });
  const init = await manager.initialize({ type: 'shamir', shares, threshold }, async (config) => {
    stored = config;
  });
  if (strip) stored = strip(stored!);
  manager.seal();
  // A fresh manager, as after a restart: it reads the (possibly stripped) config from the store.
  const fresh = createSealManager({ meta: { getSealConfig: async () => stored }, dataDir });
  return { manager: fresh, shares: init.shares, cleanup: () => rm(dataDir, { recursive: true, force: true }) };
}

const code = (err: unknown) => (err as { code?: string }).code;

/** A well-formed share that is not one of the server's: the same index as `like`, other bytes. */
function altered(like: string): string {
  const bytes = parseShare(like);
  bytes[0]! ^= 0x01;
  return 'khs1.' + bytes.toString('base64url');
}

async function unsealWith(manager: SealManager, shares: string[]): Promise<void> {
  for (const s of shares) await manager.submitShare(s);
  assert.equal(manager.openStaged(), true);
}

test('a tampered, foreign or made-up share is refused when given and does not count: progress so far stays', async () => {
  const { manager, shares, cleanup } = await sealedManager(5, 3);
  try {
    const foreign = (await splitRootKey(randomKey(), 5, 3))[0]!;
    const madeUp = 'khs1.' + Buffer.alloc(33, 7).toString('base64url');
    assert.equal((await manager.submitShare(shares[0]!)).progress, 1);
    for (const bad of [altered(shares[1]!), foreign, madeUp]) {
      await assert.rejects(manager.submitShare(bad), (err) => code(err) === 'INVALID_SHARE');
      assert.equal((await manager.status()).progress, 1, 'the bad share neither counted nor reset progress');
    }
    assert.equal((await manager.submitShare(shares[1]!)).progress, 2);
    await unsealWith(manager, [shares[2]!]);
    assert.equal(manager.isSealed(), false);
  } finally {
    await cleanup();
  }
});

test("a stranger's well-formed share cannot take a holder's index, so the holder's real share still counts", async () => {
  const { manager, shares, cleanup } = await sealedManager(3, 2);
  try {
    await assert.rejects(manager.submitShare(altered(shares[0]!)), (err) => code(err) === 'INVALID_SHARE');
    assert.equal((await manager.submitShare(shares[0]!)).progress, 1);
    await unsealWith(manager, [shares[1]!]);
  } finally {
    await cleanup();
  }
});

test('a server initialised before share digests still checks the reconstructed key, and unseals with good shares', async () => {
  const { manager, shares, cleanup } = await sealedManager(3, 2, ({ shareDigests: _, ...rest }) => rest);
  try {
    await manager.submitShare(shares[0]!);
    await assert.rejects(manager.submitShare(altered(shares[1]!)), (err) => code(err) === 'UNSEAL_FAILED');
    assert.equal((await manager.status()).progress, 0);
    await unsealWith(manager, [shares[0]!, shares[1]!]);
  } finally {
    await cleanup();
  }
});

test('unseal listeners run once each time a root key goes live, and never for a share that only counts', async () => {
  const { manager, shares, cleanup } = await sealedManager(3, 2);
  try {
    const live: boolean[] = [];
    manager.onUnseal(() => live.push(manager.isSealed()));
    await manager.submitShare(shares[0]!);
    assert.deepEqual(live, [], 'one share of two: nothing is live');
    await unsealWith(manager, [shares[1]!]);
    assert.deepEqual(live, [false], 'called once, with the key already live');
    assert.equal(manager.openStaged(), false);
    manager.seal();
    await unsealWith(manager, [shares[2]!, shares[0]!]);
    assert.deepEqual(live, [false, false]);
  } finally {
    await cleanup();
  }
});

test('a seal at any moment of the completing share leaves no key staged to open afterwards', async () => {
  const { manager, shares, cleanup } = await sealedManager(3, 2);
  try {
    // The seal lands k microtasks after the completing share is given: before it counts, while the
    // shares are combined, or after; whichever it is, nothing the share reconstructed may open later.
    for (let k = 0; k < 40; k++) {
      manager.seal();
      await manager.submitShare(shares[0]!);
      const given = manager.submitShare(shares[1]!).catch((err: unknown) => code(err));
      let wait = Promise.resolve();
      for (let i = 0; i < k; i++) wait = wait.then(() => undefined);
      await wait.then(() => manager.seal());
      const outcome = await given;
      assert.ok(outcome === 'SEALED' || typeof outcome === 'object', `k=${k}: ${String(outcome)}`);
      assert.equal(manager.openStaged(), false, `k=${k}: a key staged after the seal`);
      assert.equal(manager.isSealed(), true);
    }
  } finally {
    await cleanup();
  }
});

test('init refuses share counts that would hand a holder the whole key or no key at all, and stores nothing', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'keyhold-seal-'));
  try {
    let persisted = 0;
    const manager = createSealManager({ meta: { getSealConfig: async () => null }, dataDir });
    // A threshold of 1 with several shares: every holder alone holds the root key.
    for (const [shares, threshold] of [[3, 1], [2, 1], [2, 3], [17, 2], [1, 0]] as const) {
      await assert.rejects(manager.initialize({ type: 'shamir', shares, threshold }, async () => { persisted++; }), (err: unknown) => code(err) === 'VALIDATION_FAILED', `${threshold} of ${shares}`);
    }
    assert.equal(persisted, 0, 'no refused init stored a config');
    assert.equal(manager.isSealed(), true, 'no refused init left a root key live');
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
