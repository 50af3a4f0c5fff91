import { createPrivateKey, createPublicKey, sign, type KeyObject } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Clock } from '../../platform/clock.ts';
import type { RootKeyHolder } from '../../crypto/keyring.ts';
import { deriveFromRoot } from '../../crypto/root/root-key.ts';
import { fail, KeyholdError } from '../../errors/index.ts';
import { isUniqueViolation } from '../../storage/db-errors.ts';
import type { AuditCheckpointsTable, Database } from '../../storage/schema.ts';
import type { AuditLog } from './audit-log.ts';
import { CHECKPOINT_ACTION, checkpointEvent, checkpointMessage, checkpointValid } from './checkpoint-format.ts';
import { GENESIS_HASH } from './chain.ts';
import { lockAuditHead } from './head-lock.ts';
import type { EventMacKeys } from './event-mac.ts';
import { createSigningCheck } from './signing-check.ts';

/** PKCS#8 DER prefix of an Ed25519 private key; the 32-byte seed follows. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/**
 * The checkpoint signing key is derived from the root key, so it is never stored, only exists while
 * unsealed, and cannot be replaced by anyone who can write the database.
 */
export function deriveSigningKey(root: KeyObject): { privateKey: KeyObject; publicKey: KeyObject } {
  const seed = deriveFromRoot(root, 'audit-checkpoint-signing');
  // The DER copy holds the seed too (in Node's shared buffer pool, where nothing else would wipe it).
  const der = Buffer.concat([ED25519_PKCS8_PREFIX, seed]);
  try {
    const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    return { privateKey, publicKey: createPublicKey(privateKey) };
  } finally {
    seed.fill(0);
    der.fill(0);
  }
}

export function publicKeyText(key: KeyObject): string {
  return key.export({ format: 'der', type: 'spki' }).toString('base64');
}

/**
 * Writes signed checkpoints of the chain head, periodically and on demand. Each one is also
 * recorded as an `audit.checkpoint` event, so it travels to every sink with the events it covers:
 * a copy outside the database that a rewrite of the database cannot reach (docs/audit.md).
 */
export function createCheckpointer(deps: { db: Kysely<Database>; root: RootKeyHolder; clock: Clock; audit: Pick<AuditLog, 'appendInTx' | 'onCommitted' | 'committedEvents'>; macKeys: Pick<EventMacKeys, 'current'> }) {
  const { db, root, clock, audit, macKeys } = deps;
  const signingCheck = createSigningCheck(db);
  audit.onCommitted((segment) => signingCheck.owned(segment));
  let keys: { privateKey: KeyObject; publicKey: KeyObject } | null = null;
  /** The highest seq this process has signed: the stored checkpoints may never fall below it. */
  let highestSigned = 0;
  /** How many events the last proof before signing read back (its own group commits it does not). */
  let lastProofReads = 0;
  /** The last proof found an event the server did not write (cleared by the next checkpoint signed). */
  let tampered = false;
  root.onSeal(() => {
    keys = null;
  });
  const signingKeys = () => (keys ??= deriveSigningKey(root.rootKey()));

  return {
    /** The public key to pin for offline verification (only while unsealed). */
    publicKey: (): string => publicKeyText(signingKeys().publicKey),

    /** Whether the last attempt to sign found an event the server did not write (status shows it). */
    tampered: (): boolean => tampered,

    /** Events the last proof before signing had to read back from the database (signing-check.ts). */
    lastProofReads: (): number => lastProofReads,

    /** The highest checkpoint this process signed (0: none yet). */
    highestSigned: (): number => highestSigned,

    /**
     * Signs the current head unless nothing but checkpoint events came after the last checkpoint;
     * returns the checkpoint, or null when there was nothing to sign or another checkpointer (this node's
     * or another's) signed since this one read the last checkpoint: checkpoints never fork.
     * Every event it would sign must be the server's own (signing-check.ts): otherwise AUDIT_TAMPERED.
     */
    async checkpoint(): Promise<AuditCheckpointsTable | null> {
      const { privateKey, publicKey } = signingKeys();
      // The last checkpoint first, then the head: the head only moves forward, so it is never behind a checkpoint read before it.
      const last = await db.selectFrom('audit_checkpoints').selectAll().orderBy('seq', 'desc').limit(1).executeTakeFirst();
      // Before the head, so the head is at or past it (the head only moves forward).
      const committed = audit.committedEvents();
      const head = await db.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirstOrThrow();
      const from = last ? { seq: last.seq, hash: last.hash } : { seq: 0, hash: GENESIS_HASH };
      try {
        // The proof starts from the last checkpoint: it must be one this key signed. Checked before
        // "nothing new", or a forged row past the head would stop every checkpoint without a word.
        if (last && !checkpointValid({ ...last, prev_seq: last.prev_seq ?? null }, publicKeyText(publicKey))) {
          throw new KeyholdError('AUDIT_TAMPERED', `no checkpoint signed: the checkpoint at ${last.seq} is not signed by this server's audit key`);
        }
        if (last && (last.seq > head.seq || (last.seq === head.seq && last.hash !== head.hash))) {
          throw new KeyholdError('AUDIT_TAMPERED', `no checkpoint signed: the checkpoint at ${last.seq} covers events past the head (event ${head.seq}), or others: the end of the log was removed`);
        }
        // A signature on a log that lost what this server committed would vouch for the cut wherever it is copied.
        const highest = committed.reduce((max, e) => Math.max(max, e.seq), 0);
        if (highest > head.seq) {
          throw new KeyholdError('AUDIT_TAMPERED', `no checkpoint signed: the head says event ${head.seq}, but this server has written up to ${highest}: events were removed from the end`);
        }
      } catch (err) {
        tampered = true;
        throw err;
      }
      if (head.seq === 0 || (last && last.seq === head.seq)) return null;
      if (last) {
        // Its own event must not make the next checkpoint due, or an idle log would grow by one event per interval.
        const news = await db.selectFrom('audit_events').select('seq').where('seq', '>', last.seq).where('action', '<>', CHECKPOINT_ACTION).limit(1).executeTakeFirst();
        if (!news) return null;
      }
      const macKey = macKeys.current() ?? fail('SEALED', 'the server is sealed');
      try {
        // Each event this process committed past the last checkpoint must be there as committed (the proof compares them as it goes).
        lastProofReads = (await signingCheck.prove(macKey.key, from, head, committed)).read;
      } catch (err) {
        if (err instanceof KeyholdError && err.code === 'AUDIT_TAMPERED') tampered = true;
        throw err;
      }
      const time = clock.now();
      const prevSeq = last?.seq ?? 0;
      const row: AuditCheckpointsTable = {
        seq: head.seq, hash: head.hash, time, prev_seq: prevSeq,
        signature: sign(null, checkpointMessage(head.seq, head.hash, time, prevSeq), privateKey).toString('base64'),
        public_key: publicKeyText(publicKey),
      };
      try {
        // The row and the event that publishes it commit together. Apart, a crash between them left a
        // stored checkpoint no event carries; the next one names it (prev_seq), so every sink's copy
        // of the log then failed offline verification as if that checkpoint had been removed.
        const signed = await db.transaction().execute(async (trx) => {
          // The head's lock first: every checkpointer takes it, so they commit one at a time, and under it
          // the newest checkpoint is the last one committed. One signed since `last` was read (on this
          // node or another): this one stands down, or both would chain from `last`, a fork of the
          // checkpoints that no unique key stops when the two heads differ (the winner's event moved it).
          await lockAuditHead(trx);
          const newest = await trx.selectFrom('audit_checkpoints').select('seq').orderBy('seq', 'desc').limit(1).executeTakeFirst();
          if (Number(newest?.seq ?? 0) !== prevSeq) return false;
          await trx.insertInto('audit_checkpoints').values(row).execute();
          await audit.appendInTx(trx, [checkpointEvent(row)]);
          return true;
        });
        if (!signed) return null;
      } catch (err) {
        // A checkpoint of the same head written without the head's lock first (a node of an earlier
        // version; on SQLite the no-replace trigger says so before the key does): the same as above.
        // Anything else is a real failure and is reported.
        if (isUniqueViolation(err) || /append-only/.test(String((err as Error)?.message))) return null;
        throw err;
      }
      highestSigned = Math.max(highestSigned, row.seq);
      tampered = false;
      return row;
    },
  };
}

export type Checkpointer = ReturnType<typeof createCheckpointer>;
