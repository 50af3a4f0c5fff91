import { createPublicKey } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { UsageError } from '../args.ts';
import { CHECKPOINT_ACTION } from '../../modules/audit/checkpoint-format.ts';
import { asWritten, type AuditEvent } from '../../modules/audit/event.ts';
import { mergeCheckpoints, verifyAnswer, verifyLog, type VerifyAnswer } from '../../modules/audit/log-verifier.ts';
import type { AuditCheckpointsTable } from '../../storage/schema.ts';

/**
 * The lines of a text file, ended by LF or CRLF only. Not node:readline, which also ends a line at
 * U+2028 and U+2029: JSON.stringify leaves both as they are inside a string, so an event whose text
 * holds one (a writer's reason) would be cut in two.
 */
async function* textLines(path: string): AsyncGenerator<string> {
  let rest = '';
  for await (const chunk of createReadStream(path, { encoding: 'utf8' }) as AsyncIterable<string>) {
    rest += chunk;
    let start = 0;
    for (let nl = rest.indexOf('\n'); nl >= 0; nl = rest.indexOf('\n', start)) {
      yield rest.slice(start, rest[nl - 1] === '\r' && nl > start ? nl - 1 : nl);
      start = nl + 1;
    }
    rest = rest.slice(start);
  }
  if (rest !== '') yield rest;
}

/** The parsed lines of a JSON lines file, with their line numbers and text; a line that is not JSON ends the proof. */
async function* jsonLines<T>(path: string, what: string): AsyncGenerator<{ line: number; value: T; text: string }> {
  let n = 0;
  try {
    for await (const text of textLines(path)) {
      n++;
      if (text === '') continue;
      let value: T;
      try {
        value = JSON.parse(text) as T;
      } catch {
        throw new OfflineInputError(`${what} line ${n} is not JSON`);
      }
      yield { line: n, value, text };
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new UsageError(`${what}: no such file ${path}`);
    throw err;
  }
}

/** Input that cannot even be read as an export: reported as a failed proof, never as an "ok". */
class OfflineInputError extends Error {}

const isEvent = (e: unknown): e is AuditEvent => {
  const x = e as Partial<AuditEvent> | null;
  return typeof x === 'object' && x !== null && Number.isSafeInteger(x.seq) && typeof x.hash === 'string' && typeof x.prevHash === 'string'
    && typeof x.actor === 'object' && x.actor !== null && typeof x.resource === 'object' && x.resource !== null
    && typeof x.context === 'object' && x.context !== null && !Array.isArray(x.context);
};

const isCheckpoint = (c: unknown): c is AuditCheckpointsTable => {
  const x = c as Partial<AuditCheckpointsTable> | null;
  return typeof x === 'object' && x !== null && Number.isSafeInteger(x.seq) && typeof x.hash === 'string' && Number.isSafeInteger(x.time)
    && typeof x.signature === 'string' && typeof x.public_key === 'string' && (x.prev_seq === undefined || x.prev_seq === null || Number.isSafeInteger(x.prev_seq));
};

/**
 * The offline answer: the server's fields, and what only a file can have. `firstSeq` is the seq of
 * the file's first event: 1 for a whole log, more for a file that starts mid-chain (a rotated sink
 * file, or a cut head), whose events before it were not verified. `duplicates` counts lines skipped
 * because they repeat an event exactly (an at-least-once sink may write one).
 */
export type OfflineVerifyAnswer = VerifyAnswer & { firstSeq: number | null; duplicates: number; checkpointBeyond: number | null };

/** Whether `text` is what `keyhold audit public-key` prints: an Ed25519 public key, SPKI DER in base64. */
function isEd25519PublicKey(text: string): boolean {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return false;
  try {
    return createPublicKey({ key: Buffer.from(text, 'base64'), format: 'der', type: 'spki' }).asymmetricKeyType === 'ed25519';
  } catch {
    return false;
  }
}

/**
 * `keyhold audit verify --events FILE [--checkpoints FILE] --public-key KEY`: the server's proof run
 * over files, with no server: a whole-log JSON lines export (or a sink's file), the checkpoints
 * export if there is one, and the key pinned earlier (`keyhold audit public-key`). The log's own
 * `audit.checkpoint` events count as checkpoints too (a first pass collects them). A line that is
 * not an event is reported as the first bad one, by its line number, like any other damage.
 */
export async function verifyExportFiles(paths: { events: string; checkpoints: string | null }, publicKey: string, opts: { partial?: boolean } = {}): Promise<OfflineVerifyAnswer> {
  if (!isEd25519PublicKey(publicKey)) throw new UsageError('--public-key must be the base64 key that `keyhold audit public-key` printed');
  const stored: AuditCheckpointsTable[] = [];
  let lastSeq = 0;
  let first: AuditEvent | null = null;
  const failed = (firstBadSeq: number, problem: string): OfflineVerifyAnswer => ({
    ok: false, events: 0, headSeq: null, checkpoints: stored.length, lastSeq: null, firstBadSeq, problem, unsigned: null, firstSeq: first?.seq ?? null, duplicates: 0, checkpointBeyond: null,
  });
  try {
    if (paths.checkpoints !== null) {
      for await (const { line, value } of jsonLines<unknown>(paths.checkpoints, 'checkpoints')) {
        if (!isCheckpoint(value)) throw new OfflineInputError(`checkpoints line ${line} is not a checkpoint`);
        stored.push({ ...value, prev_seq: value.prev_seq ?? null });
      }
    }
    const published: AuditEvent[] = [];
    // First pass: the checkpoints the log publishes itself, and where the file starts. Damage is reported by the second pass, with its position.
    try {
      for await (const { value } of jsonLines<unknown>(paths.events, 'events')) {
        if (!isEvent(value)) continue;
        first ??= value;
        if (value.action === CHECKPOINT_ACTION) published.push(value);
      }
    } catch (err) {
      if (!(err instanceof OfflineInputError)) throw err;
    }
    // A file that starts past seq 1 (rotated, or its head cut) is walked from its first line's link; the answer says so.
    const from = first && first.seq > 1 ? { seq: first.seq - 1, hash: first.prevHash } : undefined;
    // Unless the caller says the file is a part (a rotated sink file), a missing head is a removal like any other, and
    // the first bad event, whatever else is wrong further on.
    if (from && !opts.partial) return failed(1, `events 1..${from.seq} are missing: the file starts at #${from.seq + 1} (a rotated sink file? verify it with --partial)`);
    const merged = mergeCheckpoints(stored, published, publicKey);
    if (!merged.ok) return failed(merged.seq, merged.problem);
    const checkpoints = merged.checkpoints;
    async function* events(): AsyncGenerator<AuditEvent> {
      for await (const { line, value, text } of jsonLines<unknown>(paths.events, 'events')) {
        if (!isEvent(value)) throw new OfflineInputError(`events line ${line} (after event ${lastSeq}) is not an audit event`);
        // The hash covers the parsed values, not the text. JSON.parse keeps the last of two equal keys, while
        // another reader may keep the first or both, and no hash covers an added field: the line must be the
        // very text Keyhold wrote, or what it shows is not all proved.
        if (JSON.stringify(asWritten(value)) !== text) {
          throw new OfflineInputError(`events line ${line} (event ${value.seq}) is not the event as Keyhold writes it: a field repeated or added, or a value written another way, which its hash does not cover`);
        }
        lastSeq = value.seq;
        yield value;
      }
    }
    const r = await verifyLog({
      events: events(), checkpoints, head: null, trustedPublicKey: publicKey, skipExactDuplicates: true, openEnd: opts.partial === true, ...(from ? { from } : {}),
    });
    // An emptied file proves nothing: every event of it was removed, however little a checkpoint covers.
    if (r.ok && first === null) return failed(1, 'the events file holds no audit event');
    return { ...verifyAnswer(r), firstSeq: first?.seq ?? null, duplicates: r.ok ? r.duplicates ?? 0 : 0, checkpointBeyond: r.checkpointBeyond ?? null };
  } catch (err) {
    if (!(err instanceof OfflineInputError)) throw err;
    return failed(lastSeq + 1, err.message);
  }
}
