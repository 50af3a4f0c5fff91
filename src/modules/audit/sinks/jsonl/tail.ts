import type { FileHandle } from 'node:fs/promises';

const CHUNK = 64 * 1024;
/** How far back the reader looks for the last complete line: a torn tail plus one event is far less. */
const MAX_SCAN = 4 * 1024 * 1024;

/** What a JSON lines file already holds, read from its end. */
export interface FileTail {
  /** Bytes up to and including the last newline; anything after them is a torn write. */
  completeBytes: number;
  size: number;
  /** The seq and hash of the last complete line's event; null when the file has no complete line. */
  last: HeldEvent | null;
}

/** The last event a copy of the log holds: its seq, and its chain hash to tell which log it is a copy of. */
export interface HeldEvent {
  seq: number;
  hash: string;
}

/**
 * Reads a sink file backwards to its last complete line and returns that event's seq and hash. A
 * last line with no newline is a write cut short (a crash or a full disk before fsync, so never
 * acknowledged): it is reported in `completeBytes` and not counted. A last complete line that is not an audit event
 * throws: then nothing tells which events the file holds, and appending could duplicate or skip.
 */
export async function readTail(h: FileHandle, path: string): Promise<FileTail> {
  const { size } = await h.stat();
  let pos = size;
  let buf = Buffer.alloc(0); // the file's bytes [pos, size)
  let complete = -1;
  while (pos > 0) {
    if (size - pos >= MAX_SCAN) throw new Error(`${path}: no complete line in its last ${MAX_SCAN} bytes, so the audit sink cannot tell which events it holds`);
    const n = Math.min(CHUNK, pos);
    pos -= n;
    buf = Buffer.concat([await readAt(h, pos, n), buf]);
    if (complete < 0) {
      const nl = buf.lastIndexOf(0x0a);
      if (nl < 0) continue;
      complete = pos + nl + 1;
    }
    const end = complete - 1 - pos; // index of the newline that ends the last complete line
    const before = end > 0 ? buf.lastIndexOf(0x0a, end - 1) : -1;
    if (before >= 0 || pos === 0) {
      return { completeBytes: complete, size, last: eventOf(buf.subarray(before + 1, end).toString('utf8'), path) };
    }
  }
  return { completeBytes: Math.max(complete, 0), size, last: null };
}

async function readAt(h: FileHandle, position: number, length: number): Promise<Buffer> {
  const out = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await h.read(out, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return out.subarray(0, done);
}

function eventOf(line: string, path: string): HeldEvent {
  let event: { seq?: unknown; hash?: unknown } | null;
  try {
    event = JSON.parse(line) as { seq?: unknown; hash?: unknown } | null;
  } catch {
    event = null;
  }
  const seq = event?.seq;
  const hash = event?.hash;
  if (typeof seq === 'number' && Number.isSafeInteger(seq) && seq >= 1 && typeof hash === 'string') return { seq, hash };
  // The line itself is not echoed: it is whatever someone else wrote into the file.
  throw new Error(`${path}: its last complete line is not an audit event, so the audit sink cannot tell which events it holds; move the file aside`);
}
