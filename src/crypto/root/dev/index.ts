import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Dev-mode root key storage: the unseal key sits in the data directory in the clear.
 * Only for local development; the server says so loudly whenever it uses this.
 */
export const DEV_KEY_FILE = 'dev-unseal.key';

export async function writeDevRootKey(dataDir: string, rootKey: Uint8Array): Promise<string> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, DEV_KEY_FILE);
  await writeFile(path, Buffer.from(rootKey).toString('base64') + '\n', { mode: 0o600 });
  return path;
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
