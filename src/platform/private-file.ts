import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/** A file written in full beside its final name, waiting to be given that name. */
export interface StagedFile {
  /** Gives the file its final name, replacing whatever was there (a link is replaced, not followed); returns the path. */
  commit(): Promise<string>;
  /** Removes it. */
  discard(): Promise<void>;
}

/**
 * Writes `contents` to a new file only the owner can read, beside `name` in `dir` (made with mode 700
 * if missing). The file is created exclusively, so neither a file already at the final name (whatever
 * its mode) nor a link planted there is ever written through. The file is on disk before it can be
 * renamed and the rename is on disk before commit returns, so a power cut never leaves the final name
 * on an empty or partial file, nor loses a file something committed elsewhere (a database) relies on.
 */
export async function stagePrivateFile(dir: string, name: string, contents: string | Uint8Array): Promise<StagedFile> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const final = join(dir, name);
  const temp = `${final}.${randomBytes(6).toString('hex')}.tmp`;
  const discard = () => unlink(temp).catch(() => {});
  await createPrivateFile(temp, contents);
  try {
    // The staged file is durable before whatever it waits on (an init's transaction) commits.
    await syncDirectory(dir);
  } catch (err) {
    await discard();
    throw err;
  }
  return {
    async commit() {
      await rename(temp, final);
      await syncDirectory(dir);
      return final;
    },
    discard,
  };
}

/** Stages and commits at once (see stagePrivateFile); a file that cannot be committed is removed. */
export async function writePrivateFile(dir: string, name: string, contents: string | Uint8Array): Promise<string> {
  const staged = await stagePrivateFile(dir, name, contents);
  try {
    return await staged.commit();
  } catch (err) {
    await staged.discard();
    throw err;
  }
}

/**
 * Creates `path` exclusively (never through a file or link already there) with mode 600, writes
 * `contents` and syncs it to disk. If writing, syncing or closing fails, the file it created is
 * removed; a file that was already there is never touched.
 */
export async function createPrivateFile(path: string, contents: string | Uint8Array | AsyncIterable<Uint8Array>): Promise<void> {
  const handle = await open(path, 'wx', 0o600);
  try {
    try {
      await handle.writeFile(contents);
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    await unlink(path).catch(() => {});
    throw err;
  }
}

/** Makes a rename in `dir` durable: until the directory itself is on disk, a power cut can undo it. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
