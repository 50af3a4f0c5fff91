import { createPublicKey, verify } from 'node:crypto';
import type { AuditCheckpointsTable } from '../../storage/schema.ts';
import { SYSTEM_ACTOR } from '../shared/context.ts';

/*
 * What a signed checkpoint is on the wire and in the chain, and how one is checked: no database and
 * no key material here, so offline verification (`keyhold audit verify --events …`) loads only this.
 * Writing checkpoints is checkpoints.ts.
 */

/** The action of the event that carries each checkpoint into the chain and out to the sinks. */
export const CHECKPOINT_ACTION = 'audit.checkpoint';

/**
 * The bytes a checkpoint signature covers. Since v2 they name the checkpoint before (0: none), so
 * one removed from the middle is missed by the next; checkpoints signed as v1 have no link (null).
 */
export function checkpointMessage(seq: number, hash: string, time: number, prevSeq: number | null): Buffer {
  const text = prevSeq === null
    ? `keyhold-audit-checkpoint-v1\n${seq}\n${hash}\n${time}`
    : `keyhold-audit-checkpoint-v2\n${seq}\n${hash}\n${time}\n${prevSeq}`;
  return Buffer.from(text, 'utf8');
}

/** Checks one checkpoint against a trusted public key (SPKI DER base64). */
export function checkpointValid(cp: AuditCheckpointsTable, trustedPublicKey: string): boolean {
  if (cp.public_key !== trustedPublicKey) return false;
  const key = createPublicKey({ key: Buffer.from(trustedPublicKey, 'base64'), format: 'der', type: 'spki' });
  return verify(null, checkpointMessage(cp.seq, cp.hash, cp.time, cp.prev_seq ?? null), key, Buffer.from(cp.signature, 'base64'));
}

/** The event that publishes a checkpoint: everything a verifier needs, so a sink's copy of the log carries its own proof. */
export function checkpointEvent(cp: AuditCheckpointsTable) {
  return {
    tenantId: null, actor: { type: SYSTEM_ACTOR.type, id: SYSTEM_ACTOR.id }, action: CHECKPOINT_ACTION,
    resource: { type: 'audit-log', id: String(cp.seq), name: null }, outcome: 'allowed' as const,
    context: { seq: String(cp.seq), hash: cp.hash, time: String(cp.time), prevSeq: String(cp.prev_seq ?? ''), signature: cp.signature, publicKey: cp.public_key },
  };
}

/** The checkpoint an `audit.checkpoint` event carries, or null if it is not one (or is malformed). */
export function checkpointFromEvent(e: { action: string; context: Record<string, string> }): AuditCheckpointsTable | null {
  if (e.action !== CHECKPOINT_ACTION) return null;
  const c = e.context;
  const seq = Number(c.seq);
  const time = Number(c.time);
  const prevSeq = c.prevSeq === undefined || c.prevSeq === '' ? null : Number(c.prevSeq);
  if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(time) || (prevSeq !== null && !Number.isSafeInteger(prevSeq))) return null;
  if (typeof c.hash !== 'string' || typeof c.signature !== 'string' || typeof c.publicKey !== 'string') return null;
  return { seq, hash: c.hash, time, signature: c.signature, public_key: c.publicKey, prev_seq: prevSeq };
}
