import { createHmac, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Clock } from '../../platform/clock.ts';
import type { RootKeyHolder } from '../../crypto/keyring.ts';
import type { AuditCheckpointsTable, Database } from '../../storage/schema.ts';

/** PKCS#8 DER prefix of an Ed25519 private key; the 32-byte seed follows. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** The bytes a checkpoint signature covers. */
export function checkpointMessage(seq: number, hash: string, time: number): Buffer {
  return Buffer.from(`keyhold-audit-checkpoint-v1\n${seq}\n${hash}\n${time}`, 'utf8');
}

/**
 * The checkpoint signing key is derived from the root key, so it is never stored, only exists while
 * unsealed, and cannot be replaced by anyone who can write the database.
 */
export function deriveSigningKey(root: KeyObject): { privateKey: KeyObject; publicKey: KeyObject } {
  const seed = createHmac('sha256', root).update('keyhold/audit-checkpoint-signing/v1').digest();
  try {
    const privateKey = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
    return { privateKey, publicKey: createPublicKey(privateKey) };
  } finally {
    seed.fill(0);
  }
}

export function publicKeyText(key: KeyObject): string {
  return key.export({ format: 'der', type: 'spki' }).toString('base64');
}

/** Checks one checkpoint against a trusted public key (SPKI DER base64). */
export function checkpointValid(cp: AuditCheckpointsTable, trustedPublicKey: string): boolean {
  if (cp.public_key !== trustedPublicKey) return false;
  const key = createPublicKey({ key: Buffer.from(trustedPublicKey, 'base64'), format: 'der', type: 'spki' });
  return verify(null, checkpointMessage(cp.seq, cp.hash, cp.time), key, Buffer.from(cp.signature, 'base64'));
}

/** Writes signed checkpoints of the chain head: periodically, and on demand. */
export function createCheckpointer(deps: { db: Kysely<Database>; root: RootKeyHolder; clock: Clock }) {
  const { db, root, clock } = deps;
  let keys: { privateKey: KeyObject; publicKey: KeyObject } | null = null;
  root.onSeal(() => {
    keys = null;
  });
  const signingKeys = () => (keys ??= deriveSigningKey(root.rootKey()));

  return {
    /** The public key to pin for offline verification (only while unsealed). */
    publicKey: (): string => publicKeyText(signingKeys().publicKey),

    /** Signs the current head unless it is already checkpointed; returns the checkpoint or null. */
    async checkpoint(): Promise<AuditCheckpointsTable | null> {
      const { privateKey, publicKey } = signingKeys();
      const head = await db.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirstOrThrow();
      if (head.seq === 0) return null;
      const last = await db.selectFrom('audit_checkpoints').select('seq').orderBy('seq', 'desc').limit(1).executeTakeFirst();
      if (last && last.seq >= head.seq) return null;
      const time = clock.now();
      const row: AuditCheckpointsTable = {
        seq: head.seq, hash: head.hash, time,
        signature: sign(null, checkpointMessage(head.seq, head.hash, time), privateKey).toString('base64'),
        public_key: publicKeyText(publicKey),
      };
      try {
        await db.insertInto('audit_checkpoints').values(row).execute();
      } catch {
        return null; // another process checkpointed the same head first
      }
      return row;
    },
  };
}

export type Checkpointer = ReturnType<typeof createCheckpointer>;
