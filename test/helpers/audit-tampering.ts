import { sign, type KeyObject } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { fromRow } from '../../src/modules/audit/audit-log.ts';
import { chainHash } from '../../src/modules/audit/chain.ts';
import { CHECKPOINT_ACTION, checkpointEvent, checkpointMessage } from '../../src/modules/audit/checkpoint-format.ts';
import type { DialectName } from '../../src/storage/database.ts';
import type { AuditCheckpointsTable, AuditEventsTable, Database } from '../../src/storage/schema.ts';

/**
 * Drops every append-only guard of the audit tables, as someone with the database owner's rights
 * could: the starting point of every tampering test (what remains to catch it is the chain, the
 * checkpoints and what the server remembers).
 */
export async function dropAuditGuards<DB>(db: Kysely<DB>, dialect: DialectName): Promise<void> {
  for (const table of ['audit_events', 'audit_checkpoints']) {
    const triggers = dialect === 'sqlite'
      ? [`${table}_no_update`, `${table}_no_delete`, `${table}_no_replace`].map((name) => `drop trigger if exists ${name}`)
      : [`drop trigger if exists ${table}_append_only on ${table}`];
    for (const statement of triggers) await sql.raw(statement).execute(db);
  }
}

/**
 * Replaces the whole log with `events`, numbered on from the first one's seq, every hash
 * recomputed and the head moved to match: a rewrite the chain alone cannot tell (guards dropped first).
 */
export async function rewriteChain(db: Kysely<Database>, events: AuditEventsTable[]): Promise<void> {
  let prev = events[0]!.prev_hash;
  const out = events.map((r, i) => {
    const row = { ...r, seq: events[0]!.seq + i, prev_hash: prev };
    row.hash = chainHash(prev, fromRow(row));
    prev = row.hash;
    return row;
  });
  await sql`delete from audit_events`.execute(db);
  await db.insertInto('audit_events').values(out).execute();
  await db.updateTable('audit_head').set({ seq: out.at(-1)!.seq, hash: prev }).where('id', '=', 1).execute();
}

/**
 * The audit tables as they are now, and a function that puts them back so (guards already dropped
 * then): each tampering case starts from the same log.
 */
export async function snapshotAudit(db: Kysely<Database>): Promise<() => Promise<void>> {
  const events = await db.selectFrom('audit_events').selectAll().orderBy('seq').execute();
  const checkpoints = await db.selectFrom('audit_checkpoints').selectAll().orderBy('seq').execute();
  const head = await db.selectFrom('audit_head').selectAll().executeTakeFirstOrThrow();
  return async () => {
    await sql`delete from audit_events`.execute(db);
    await sql`delete from audit_checkpoints`.execute(db);
    await db.insertInto('audit_events').values(events).execute();
    if (checkpoints.length > 0) await db.insertInto('audit_checkpoints').values(checkpoints).execute();
    await db.updateTable('audit_head').set({ seq: head.seq, hash: head.hash }).where('id', '=', 1).execute();
  };
}

/**
 * Re-signs every stored checkpoint as only the holder of the signing key could: each gets the
 * `prev_seq` that `prevOf` gives it and the hash of the rewritten chain at its seq, and each
 * `audit.checkpoint` event carries its checkpoint as re-signed (the chain is rehashed as it goes, so
 * rows, events and hashes all agree). MACs are left as they were (verify here without the MAC key).
 */
export async function resignCheckpoints(
  db: Kysely<Database>, signing: { privateKey: KeyObject; publicKey: string }, prevOf: (cp: AuditCheckpointsTable) => number | null,
): Promise<AuditCheckpointsTable[]> {
  const events = await db.selectFrom('audit_events').selectAll().orderBy('seq').execute();
  const stored = new Map((await db.selectFrom('audit_checkpoints').selectAll().execute()).map((c) => [c.seq, c]));
  const resigned = new Map<number, AuditCheckpointsTable>();
  let prev = events[0]!.prev_hash;
  const out = events.map((r) => {
    const row = { ...r, prev_hash: prev };
    const published = row.action === CHECKPOINT_ACTION ? resigned.get(Number(JSON.parse(row.context).seq)) : undefined;
    if (published) row.context = JSON.stringify(checkpointEvent(published).context);
    row.hash = chainHash(prev, fromRow(row));
    prev = row.hash;
    const old = stored.get(row.seq);
    if (old) {
      const prevSeq = prevOf(old);
      const signature = sign(null, checkpointMessage(old.seq, row.hash, old.time, prevSeq), signing.privateKey).toString('base64');
      resigned.set(old.seq, { ...old, hash: row.hash, prev_seq: prevSeq, signature, public_key: signing.publicKey });
    }
    return row;
  });
  await sql`delete from audit_events`.execute(db);
  await sql`delete from audit_checkpoints`.execute(db);
  await db.insertInto('audit_events').values(out).execute();
  if (resigned.size > 0) await db.insertInto('audit_checkpoints').values([...resigned.values()]).execute();
  await db.updateTable('audit_head').set({ seq: out.at(-1)!.seq, hash: prev }).where('id', '=', 1).execute();
  return [...resigned.values()].sort((a, b) => a.seq - b.seq);
}
