import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomToken } from '../../bytes.ts';

/**
 * Dev-mode root key storage: the unseal key sits in the data directory in the clear.
 * Only for local development; the server says so loudly whenever it uses this.
 */
export const DEV_KEY_FILE = 'dev-unseal.key';

/** A key file written beside its final name, waiting for the init that uses the key to commit. */
export interface StagedDevKey {
  /** Gives the file its final name (after the init committed). */
  commit(): Promise<string>;
  /** Removes it (the init did not commit). */
  discard(): Promise<void>;
}

/**
 * Writes the key to a file of its own before the init commits, so a key that cannot be written
 * stops the init (a committed dev init without its key file could never be unsealed again), and
 * an init that loses a race never replaces the winner's file.
 */
export async function stageDevRootKey(dataDir: string, rootKey: Uint8Array): Promise<StagedDevKey> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const final = join(dataDir, DEV_KEY_FILE);
  const temp = `${final}.${randomToken(6)}.tmp`;
  await writeFile(temp, Buffer.from(rootKey).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
  return {
    async commit() {
      await rename(temp, final);
      return final;
    },
    async discard() {
      await unlink(temp).catch(() => {});
    },
  };
}

export async function readDevRootKey(dataDir: string): Promise<Buffer | null> {
  try {
    const text = await readFile(join(dataDir, DEV_KEY_FILE), 'utf8');
    return Buffer.from(text.trim(), 'base64');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
