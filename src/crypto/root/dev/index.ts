import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stagePrivateFile, type StagedFile } from '../../../platform/private-file.ts';

/**
 * Dev-mode root key storage: the unseal key sits in the data directory in the clear.
 * Only for local development; the server says so loudly whenever it uses this.
 */
export const DEV_KEY_FILE = 'dev-unseal.key';

/**
 * Writes the key to a file of its own before the init commits, so a key that cannot be written
 * stops the init (a committed dev init without its key file could never be unsealed again), and
 * an init that loses a race never replaces the winner's file. `commit` once the init committed,
 * `discard` if it did not.
 */
export function stageDevRootKey(dataDir: string, rootKey: Uint8Array): Promise<StagedFile> {
  return stagePrivateFile(dataDir, DEV_KEY_FILE, Buffer.from(rootKey).toString('base64') + '\n');
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
