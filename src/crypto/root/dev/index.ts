import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { wipe } from '../../bytes.ts';
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

/** The dev key file is there but holds no root key, or cannot be read: start-up stops and names the file. */
export class DevKeyFileError extends Error {
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}; restore the file from a copy, or use an empty data directory (and database) for a new dev server`);
    this.name = 'DevKeyFileError';
  }
}

/** The root key from the data directory's key file; null if there is none, DevKeyFileError if it is damaged. */
export async function readDevRootKey(dataDir: string): Promise<Buffer | null> {
  const file = join(dataDir, DEV_KEY_FILE);
  let text: string;
  try {
    text = (await readFile(file, 'utf8')).trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    throw new DevKeyFileError(file, `cannot be read (${code ?? (err as Error).message})`);
  }
  // The text is never echoed: it is (or was) key material.
  if (text === '') throw new DevKeyFileError(file, 'is empty');
  const raw = Buffer.from(text, 'base64');
  const problem = raw.toString('base64') !== text ? 'is not base64 text of a root key'
    : raw.length !== 32 ? `holds a key of ${raw.length} bytes, not 32` : null;
  if (problem === null) return raw;
  wipe(raw);
  throw new DevKeyFileError(file, problem);
}
