import type { KeyObject } from 'node:crypto';
import { toKeyObject } from '../../crypto/aead.ts';
import { randomKey, wipe } from '../../crypto/bytes.ts';
import type { RootKeyHolder } from '../../crypto/keyring.ts';
import { makeRootCheck, verifiedRootKey } from '../../crypto/root/root-key.ts';
import { parseShare, shareDigest, splitRootKey } from '../../crypto/root/shamir/index.ts';
import { readDevRootKey, stageDevRootKey } from '../../crypto/root/dev/index.ts';
import { fail } from '../../errors/index.ts';
import { createShareCollector, type ShareCollector } from './share-collector.ts';
import type { SealConfig, SystemMetaRepository } from './system-meta-repository.ts';

export interface SealStatus {
  initialized: boolean;
  sealed: boolean;
  type: 'shamir' | 'dev' | null;
  threshold: number;
  shares: number;
  progress: number;
}

export interface SealManager extends RootKeyHolder {
  status(): Promise<SealStatus>;
  /**
   * Generates the root key and keeps it live while `persist` stores the seal config and everything
   * bootstrapped under the key, atomically. Returns the shares, to be shown once.
   */
  initialize(opts: { type: 'shamir' | 'dev'; shares: number; threshold: number }, persist: (config: SealConfig) => Promise<void>): Promise<{ shares: string[] }>;
  /**
   * Counts one share. The share that completes the threshold leaves the verified root key staged,
   * not live: the server stays sealed (`isSealed`) until `openStaged`, so nothing is served before
   * the unseal event is durable. The returned status is the one the server will have then.
   */
  submitShare(text: string): Promise<SealStatus>;
  /** Dev mode: stage the root key from the key file in the data directory; false if there is none. */
  unsealFromDevKey(): Promise<boolean>;
  /** Makes the staged root key live; false if there is none (a seal dropped it meanwhile). */
  openStaged(): boolean;
  /** Seals: drops the live and any staged root key and the shares given so far. */
  seal(): void;
  isSealed(): boolean;
  /** Runs `listener` each time a root key goes live (after its unseal event is durable). */
  onUnseal(listener: () => void): void;
}

/**
 * The root of trust. The server starts sealed; the root key exists only in memory between unseal
 * and seal. Shamir reconstruction is verified against a stored key check value because the
 * library returns a wrong key, silently, from a tampered share.
 */
export function createSealManager(deps: { meta: Pick<SystemMetaRepository, 'getSealConfig'>; dataDir: string }): SealManager {
  const { meta, dataDir } = deps;
  let root: KeyObject | null = null;
  /** Verified, waiting for its unseal event (see submitShare). */
  let staged: KeyObject | null = null;
  /** The shares given so far towards an unseal (made on the first). */
  let pending: ShareCollector | null = null;
  /** Moves on every seal: a reconstruction a seal overtook must not stage its key afterwards. */
  let seals = 0;
  const sealListeners: Array<() => void> = [];
  const unsealListeners: Array<() => void> = [];
  let configCache: SealConfig | null = null;
  /** An init in progress: a second would make its own key live while the first stores things under the first's. */
  let initializing = false;

  async function config(): Promise<SealConfig | null> {
    configCache ??= await meta.getSealConfig();
    return configCache;
  }

  /** Forgets the shares given so far, overwriting them: they are key material. */
  function dropPending(): void {
    pending?.drop();
  }

  function stage(candidate: Buffer, check: Uint8Array): boolean {
    const key = verifiedRootKey(candidate, check);
    if (!key) return false;
    staged = key;
    dropPending();
    return true;
  }

  const manager: SealManager = {
    rootKey() {
      return root ?? fail('SEALED', 'the server is sealed; unseal it with the key shares');
    },

    onSeal(listener) {
      sealListeners.push(listener);
    },

    onUnseal(listener) {
      unsealListeners.push(listener);
    },

    isSealed: () => root === null,

    async status() {
      const c = await config();
      return {
        initialized: c !== null,
        sealed: root === null,
        type: c?.type ?? null,
        threshold: c?.threshold ?? 0,
        shares: c?.shares ?? 0,
        progress: pending?.count ?? 0,
      };
    },

    async initialize(opts, persist) {
      if (await config()) fail('ALREADY_INITIALIZED', 'the server is already initialised');
      if (opts.threshold < 1 || opts.shares < opts.threshold || opts.shares > 16) {
        fail('VALIDATION_FAILED', 'need 1 <= threshold <= shares <= 16');
      }
      if (opts.type === 'shamir' && opts.threshold < 2 && opts.shares > 1) {
        fail('VALIDATION_FAILED', 'a threshold of 1 with several shares gives each holder the whole key; use threshold >= 2');
      }
      // Checked and set with no await between (the config read above lets other requests run).
      if (initializing) fail('ALREADY_INITIALIZED', 'the server is already being initialised');
      initializing = true;
      const raw = randomKey(32);
      try {
        const key = toKeyObject(raw);
        const shares = opts.type === 'shamir' ? await splitRootKey(raw, opts.shares, opts.threshold) : [];
        const cfg: SealConfig = {
          type: opts.type,
          shares: opts.type === 'shamir' ? opts.shares : 1,
          threshold: opts.type === 'shamir' ? opts.threshold : 1,
          check: makeRootCheck(key).toString('base64'),
          ...(opts.type === 'shamir' ? { shareDigests: shares.map((s) => shareDigest(parseShare(s))) } : {}),
        };
        // Dev mode: the key file is written first; an init whose key cannot be kept must not commit.
        const keyFile = opts.type === 'dev' ? await stageDevRootKey(dataDir, raw) : null;
        // The key is live while the caller persists everything that needs it (one transaction);
        // if that fails, it is dropped again and nothing of this init remains.
        root = key;
        try {
          await persist(cfg);
        } catch (err) {
          manager.seal();
          await keyFile?.discard();
          throw err;
        }
        configCache = cfg;
        await keyFile?.commit();
        return { shares };
      } finally {
        initializing = false;
        wipe(raw);
      }
    },

    async submitShare(text) {
      const c = (await config()) ?? fail('NOT_INITIALIZED', 'the server has not been initialised');
      // Unsealed, or unsealing (another share completed the threshold; its event is being recorded).
      if (root || staged) return manager.status();
      if (c.type !== 'shamir') fail('VALIDATION_FAILED', 'this server is not sealed with Shamir shares');
      pending ??= createShareCollector(c);
      if (pending.add(text)) {
        const epoch = seals;
        const key = await pending.combine();
        if (epoch !== seals) fail('SEALED', 'the server was sealed while these shares were being combined; start again');
        if (!key) fail('UNSEAL_FAILED', 'the shares do not reconstruct the root key (one is wrong or tampered); start again');
        staged = key;
        return { ...(await manager.status()), sealed: false };
      }
      return manager.status();
    },

    async unsealFromDevKey() {
      const c = await config();
      if (!c || c.type !== 'dev') return false;
      const raw = await readDevRootKey(dataDir);
      if (!raw) return false;
      if (!stage(raw, Buffer.from(c.check, 'base64'))) fail('UNSEAL_FAILED', 'the dev unseal key does not match this database');
      return true;
    },

    openStaged() {
      if (!staged) return false;
      root = staged;
      staged = null;
      // A share that came while the completing one was being combined counts towards nothing now.
      dropPending();
      for (const listener of unsealListeners) listener();
      return true;
    },

    seal() {
      seals++;
      root = null;
      staged = null;
      dropPending();
      for (const listener of sealListeners) listener();
    },
  };
  return manager;
}
