import type { KeyObject } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import { KeyholdError } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { timeOrderedId } from '../../platform/ids.ts';
import type { AuditEventsTable, Database } from '../../storage/schema.ts';
import type { RequestContext } from '../shared/context.ts';
import { chainHash, type ChainSegment, type StoredEvent, type VerifyResult } from './chain.ts';
import { commitMac, writtenWhileSealed, type EventMacKey, type EventMacKeys } from './event-mac.ts';
import { macStart } from './keyed-from.ts';
import { CHECKPOINT_ACTION } from './checkpoint-format.ts';
import { mergeCheckpoints, verifyLog } from './log-verifier.ts';
import { asWritten, type AuditEvent } from './event.ts';
import { mistypedColumn, typedRow } from './stored-values.ts';
import type { AuditAppender } from './sqlite-appender.ts';
import { isTransactionConflict } from '../../storage/db-errors.ts';
import type { AfterCommit } from '../../storage/commit-hooks.ts';
import { createCommittedFloor, type CommittedEvent } from './committed-floor.ts';
import { withoutStatementTimeout } from '../../storage/unbounded-read.ts';

/** What a service says happened; the log adds sequence, time, id and the chain. */
export interface AuditInput {
  tenantId: string | null;
  actor: AuditEvent['actor'];
  action: string;
  resource: AuditEvent['resource'];
  environment?: string | null;
  secretVersion?: number | null;
  outcome: AuditEvent['outcome'];
  reason?: string | null;
  context?: Record<string, string>;
}

/** The actor and request context of a tenant operation, as audit fields. */
export function auditFrom(ctx: RequestContext & { tenantId: string | null }): Pick<AuditInput, 'tenantId' | 'actor' | 'context'> {
  const context: Record<string, string> = { requestId: ctx.requestId };
  if (ctx.sourceIp) context.sourceIp = ctx.sourceIp;
  if (ctx.userAgent) context.userAgent = ctx.userAgent;
  // Which session or token acted (its id, never the token): ties a script's SDK reads to its run's token.
  if (ctx.actor.credentialId) context.credentialId = ctx.actor.credentialId;
  return { tenantId: ctx.tenantId, actor: { type: ctx.actor.type, id: ctx.actor.id }, context };
}

function toRow(e: AuditEvent, mac: string | null): Omit<AuditEventsTable, 'mac'> & { mac?: string } {
  return {
    seq: e.seq, id: e.id, time: e.time, tenant_id: e.tenantId, actor_type: e.actor.type, actor_id: e.actor.id, action: e.action,
    resource_type: e.resource.type, resource_id: e.resource.id, resource_name: e.resource.name, environment: e.environment,
    secret_version: e.secretVersion, outcome: e.outcome, reason: e.reason, context: JSON.stringify(e.context),
    prev_hash: e.prevHash, hash: e.hash,
    // Omitted, not null, when unkeyed: a log opened on a database migrated before 019 (upgrade tests) has no such column.
    ...(mac === null ? {} : { mac }),
  };
}

/** A stored context, or null when it is not a JSON object (only a row written by hand can hold one). */
function parseContext(text: string): Record<string, string> | null {
  try {
    const context: unknown = JSON.parse(text);
    return typeof context === 'object' && context !== null && !Array.isArray(context) ? context as Record<string, string> : null;
  } catch {
    return null;
  }
}

/**
 * A stored row as the proofs walk it (verify, the checkpointer): with its MAC, and marked
 * `unreadable` when its context is not a JSON object, so the walk names the event as altered
 * instead of failing on it.
 */
export function storedFromRow(r: AuditEventsTable): StoredEvent {
  const mistyped = mistypedColumn(r);
  if (mistyped !== null) return { ...fromRow({ ...typedRow(r), context: '{}' }), mac: r.mac, unreadable: mistyped };
  const context = parseContext(r.context);
  const event = { ...fromRow({ ...r, context: context === null ? '{}' : r.context }), mac: r.mac };
  return context === null ? { ...event, unreadable: 'its context is not a JSON object' } : event;
}

/**
 * What the read side (pages, exports, sinks) shows for a context that is not a JSON object: the
 * row was written by someone other than Keyhold. Shown, not thrown: one such row must not stop an
 * auditor's page or every sink's delivery for good; verify names it as altered.
 */
const UNREADABLE = 'the stored context is not a JSON object: run audit verify';

/** A stored row as an event; one holding a value not of its column's type is shown typed and marked (stored-values.ts). */
export function fromRow(r: AuditEventsTable): AuditEvent {
  const mistyped = mistypedColumn(r);
  if (mistyped !== null) {
    const event = fromRow(typedRow(r));
    return { ...event, context: { ...event.context, unreadable: `the stored row is not as Keyhold writes it (${mistyped}): run audit verify` } };
  }
  return asWritten({
    seq: r.seq, id: r.id, time: r.time, tenantId: r.tenant_id, actor: { type: r.actor_type as AuditEvent['actor']['type'], id: r.actor_id },
    action: r.action, resource: { type: r.resource_type, id: r.resource_id, name: r.resource_name }, environment: r.environment,
    secretVersion: r.secret_version, outcome: r.outcome as AuditEvent['outcome'], reason: r.reason,
    context: parseContext(r.context) ?? { unreadable: UNREADABLE }, prevHash: r.prev_hash, hash: r.hash,
  });
}

/**
 * Batches committing at once through the database (PostgreSQL): one, so that while a batch commits
 * the next one gathers every event that arrives meanwhile. The SQLite appender takes batches as
 * they form and gathers them on its side (sqlite-appender.ts).
 */
const MAX_IN_FLIGHT = 1;

/** Events gathered for one group commit, and the one promise every caller that added to it awaits. */
interface Batch {
  inputs: AuditInput[];
  /** The MAC key when its events were recorded (null: sealed), not when they are written. */
  macKey: EventMacKey | null;
  done: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

function newBatch(macKey: EventMacKey | null): Batch {
  const { promise: done, resolve, reject } = Promise.withResolvers<void>();
  return { inputs: [], macKey, done, resolve, reject };
}

/** A sealed server writes nothing but unseal attempts: the rest has no MAC key, and is refused. */
function sealedRefusal(inputs: readonly AuditInput[]): KeyholdError | null {
  return inputs.every(writtenWhileSealed) ? null : new KeyholdError('SEALED', 'the server is sealed: the action cannot be recorded, so it was refused');
}

/**
 * The context as it will be stored: without the fields left undefined (an optional field of a source
 * object spread into it, which TypeScript lets through). JSON drops them from the stored text but
 * the canonical form would hash them as null, and the event would then fail verify as altered. (The
 * SQLite appender's batches cross to its worker as JSON, which drops them the same way.)
 */
function storedContext(context: Record<string, string> | undefined): Record<string, string> {
  if (context === undefined) return {};
  for (const key in context) {
    if (context[key] === undefined) return Object.fromEntries(Object.entries(context).filter(([, v]) => v !== undefined));
  }
  return context;
}

/** An event with everything but its place in the chain. */
function pending(input: AuditInput, now: number): Omit<AuditEvent, 'seq' | 'prevHash' | 'hash'> {
  return {
    id: timeOrderedId(now), time: now, tenantId: input.tenantId, actor: input.actor, action: input.action, resource: input.resource,
    environment: input.environment ?? null, secretVersion: input.secretVersion ?? null, outcome: input.outcome,
    reason: input.reason ?? null, context: storedContext(input.context),
  };
}

/** Whether the log can be written, as an operator needs to know it: actions are refused while it cannot. */
export type AuditHealth =
  | { writable: true }
  | { writable: false; failingSince: number; cause: string };

/**
 * The durable, hash-chained audit log (SPEC §7). Actions that write append their event in their
 * own transaction (`appendInTx`), so both commit or neither. Actions that only read call `record`,
 * which group-commits: concurrent events share one transaction and one fsync, and each caller
 * resumes only once its event is durable. If the log cannot be written the action is refused
 * (AUDIT_UNAVAILABLE): fail closed.
 */
export function createAuditLog(deps: {
  db: Kysely<Database>; clock: Clock; maxBatch?: number;
  /** Writes `record` batches off the event loop (SQLite); without it they are written through `db`. */
  appender?: AuditAppender;
  /** The event MAC key while unsealed (event-mac.ts); without it (tests of the log alone) events go unkeyed. */
  macKeys?: Pick<EventMacKeys, 'current'>;
  /** Tells when a write's transaction committed (Storage.afterCommit), so its events count as committed then. */
  afterCommit?: AfterCommit;
}) {
  const { db, clock, appender, macKeys, afterCommit } = deps;
  const maxBatch = deps.maxBatch ?? 1000;
  /** Batches waiting for a commit, oldest first; only the last one still takes events. */
  const queue: Batch[] = [];
  let inFlight = 0;
  let scheduled = false;
  const appendedListeners: Array<(lastSeq: number) => void> = [];
  const segmentListeners: Array<(segment: ChainSegment) => void> = [];
  const healthListeners: Array<(health: AuditHealth) => void> = [];
  let health: AuditHealth = { writable: true };
  /** What this process knows to be committed: verify and the checkpointer refuse a log that lost it. */
  const floor = createCommittedFloor();

  /** An append failed: the action is refused; the first failure of a streak is announced. */
  function unavailable(err: unknown): KeyholdError {
    const cause = String((err as Error)?.message ?? err);
    if (health.writable) {
      health = { writable: false, failingSince: clock.now(), cause };
      for (const listener of healthListeners) listener(health);
    }
    return new KeyholdError('AUDIT_UNAVAILABLE', 'the audit log cannot record this action, so it was refused', { cause });
  }

  /** An append succeeded: if the log was failing, it has recovered. */
  function appended(): void {
    if (health.writable) return;
    health = { writable: true };
    for (const listener of healthListeners) listener(health);
  }

  /** The key to record `inputs` under now; throws SEALED if there is none and they need one. */
  function keyFor(inputs: readonly AuditInput[]): EventMacKey | null {
    if (!macKeys) return null;
    const key = macKeys.current();
    const refused = key ? null : sealedRefusal(inputs);
    if (refused) throw refused;
    return key;
  }

  /** Appends `inputs` in `trx`, the last one carrying the run's MAC under `key` (event-mac.ts). */
  async function appendRows(trx: Transaction<Database>, inputs: AuditInput[], key: KeyObject | null, own: boolean): Promise<AuditEvent[]> {
    // Moving the head first takes its row lock (PostgreSQL), so concurrent appenders form one chain.
    const head = await trx.updateTable('audit_head').set((eb) => ({ seq: eb('seq', '+', inputs.length) }))
      .where('id', '=', 1).returning(['seq', 'hash']).executeTakeFirstOrThrow();
    let prevHash = head.hash;
    let seq = head.seq - inputs.length;
    // Read under the head's lock: in the log's own transaction, what was there is committed. A write's transaction
    // may have appended before and roll back yet: what it read shows only a head moved back (committed-floor.ts).
    if (own) floor.headRead({ seq, hash: head.hash });
    else floor.headReadInTx({ seq, hash: head.hash });
    const now = clock.now();
    const events: AuditEvent[] = inputs.map((input) => {
      const base = { ...pending(input, now), seq: ++seq };
      const hash = chainHash(prevHash, base);
      const event: AuditEvent = { ...base, prevHash, hash };
      prevHash = hash;
      return event;
    });
    // One MAC for the run, on its last event (event-mac.ts).
    const last = events.length - 1;
    const mac = key ? commitMac(key, events[0]!.seq, events[last]!.seq, events[last]!.hash) : null;
    await trx.insertInto('audit_events').values(events.map((e, i) => toRow(e, i === last ? mac : null))).execute();
    await trx.updateTable('audit_head').set({ hash: prevHash }).where('id', '=', 1).execute();
    return events;
  }

  /** Appends a batch in its own durable transaction, under the key it was recorded with; returns what the commit appended. */
  async function commitBatch(inputs: AuditInput[], macKey: EventMacKey | null): Promise<ChainSegment> {
    // Recorded before a seal, written after it: the worker uses the key for this batch and forgets it.
    if (appender) return appender.append(clock.now(), inputs, macKey, macKey === null || macKeys?.current() === macKey);
    const events = await db.transaction().execute((trx) => appendRows(trx, inputs, macKey?.key ?? null, true));
    const last = events[events.length - 1]!;
    return { first: events[0]!.seq, prevHash: events[0]!.prevHash, last: last.seq, lastHash: last.hash };
  }

  /** Sends what is queued once this turn of the event loop is over, so its requests share a batch. */
  function schedule(): void {
    if (scheduled || queue.length === 0 || (!appender && inFlight >= MAX_IN_FLIGHT)) return;
    scheduled = true;
    setImmediate(dispatch);
  }

  function dispatch(): void {
    scheduled = false;
    while (queue.length > 0 && (appender || inFlight < MAX_IN_FLIGHT)) {
      // Every queued batch up to maxBatch events (at least one) recorded under the same key: one group commit.
      const batches = [queue.shift()!];
      const macKey = batches[0]!.macKey;
      let count = batches[0]!.inputs.length;
      while (queue.length > 0 && count + queue[0]!.inputs.length <= maxBatch && queue[0]!.macKey === macKey) {
        count += queue[0]!.inputs.length;
        batches.push(queue.shift()!);
      }
      inFlight++;
      commitBatch(batches.length === 1 ? batches[0]!.inputs : batches.flatMap((b) => b.inputs), macKey).then(
        (segment) => {
          const lastSeq = segment.last;
          inFlight--;
          floor.committed(segment);
          appended();
          schedule();
          for (const b of batches) b.resolve();
          for (const listener of segmentListeners) listener(segment);
          for (const listener of appendedListeners) listener(lastSeq);
        },
        (err: unknown) => {
          inFlight--;
          schedule();
          const refused = unavailable(err);
          for (const b of batches) b.reject(refused);
        },
      );
    }
  }

  return {
    /** Whether the log can be written now (the last append succeeded), and since when it cannot. */
    health(): AuditHealth {
      return health;
    },

    /** Called when the log stops or starts again being writable (the server logs it). */
    onHealthChange(listener: (health: AuditHealth) => void): void {
      healthListeners.push(listener);
    },

    /**
     * Called after each group commit with what it appended (several batches of one commit report it
     * once each): the checkpointer need not read back what this process itself wrote.
     */
    onCommitted(listener: (segment: ChainSegment) => void): void {
      segmentListeners.push(listener);
    },

    /**
     * The events this process knows it committed, which the log must still hold as they were: the
     * highest, and one found overwritten by a later commit (the tail was cut and appended to again).
     */
    committedEvents(): CommittedEvent[] {
      return floor.known();
    },

    /** Called after each group commit with the new last seq (streaming delivery wakes on it). */
    onAppended(listener: (lastSeq: number) => void): void {
      appendedListeners.push(listener);
    },

    /**
     * Appends inside the caller's transaction; a failure aborts the caller's action with it. Call it
     * after the transaction's other locks (the tenant row's above all, which KEK rotation updates,
     * secret writes read FOR SHARE and `bumpInTx` moves): the head is every writer's lock, and a lock
     * taken after it deadlocks on PostgreSQL against a writer that took that lock first. The order
     * is written down once, in docs/architecture.md ("Lock order").
     */
    async appendInTx(trx: Transaction<Database>, inputs: AuditInput[]): Promise<AuditEvent[]> {
      if (inputs.length === 0) return [];
      // Sealed meanwhile: the action is refused (SEALED), the log itself is fine.
      const key = keyFor(inputs)?.key ?? null;
      try {
        const events = await appendRows(trx, inputs, key, false);
        appended();
        // Counted once the caller's transaction commits: until then they may still roll back.
        const last = events[events.length - 1]!;
        const segment = { first: events[0]!.seq, prevHash: events[0]!.prevHash, last: last.seq, lastHash: last.hash };
        await afterCommit?.(trx, () => floor.committed(segment));
        return events;
      } catch (err) {
        // The caller's transaction lost to another (a deadlock, a lock timeout): nothing is wrong with the log.
        if (isTransactionConflict(err)) throw err;
        throw unavailable(err);
      }
    },

    /** Durably records events outside any transaction (group commit). Never call it inside a transaction. */
    record(inputs: AuditInput[]): Promise<void> {
      let macKey: EventMacKey | null;
      try {
        macKey = keyFor(inputs);
      } catch (err) {
        return Promise.reject(err);
      }
      appender?.poll();
      let batch = queue[queue.length - 1];
      if (batch === undefined || batch.inputs.length + inputs.length > maxBatch || batch.macKey !== macKey) {
        batch = newBatch(macKey);
        queue.push(batch);
        schedule();
      }
      for (const input of inputs) batch.inputs.push(input);
      return batch.done;
    },

    async readAfter(seq: number, limit: number): Promise<AuditEvent[]> {
      const rows = await db.selectFrom('audit_events').selectAll().where('seq', '>', seq).orderBy('seq').limit(limit).execute();
      return rows.map(fromRow);
    },

    /**
     * The head (seq and hash) and the number of signed checkpoints, as one short text: one row read,
     * and it changes whenever the log is appended to, checkpointed, or its head rewritten. An event
     * altered in place leaves it as it was; only a walk (`verify`) sees that.
     */
    async fingerprint(): Promise<string> {
      const row = await db.selectFrom('audit_head')
        .select((eb) => ['seq', 'hash', eb.selectFrom('audit_checkpoints').select(eb.fn.countAll().as('n')).as('checkpoints')])
        .where('id', '=', 1).executeTakeFirstOrThrow();
      return `${row.seq}:${row.hash}:${Number(row.checkpoints)}`;
    },

    /**
     * Proves the whole chain; then every signed checkpoint (stored, or published by an
     * `audit.checkpoint` event; each under the trusted key, linked to the one before, and the event
     * at its seq carrying its hash); then that the log reaches its last checkpoint, its recorded
     * head, and everything this process committed or signed (`checkpointFloor`). A tail cut off
     * after a checkpoint fails here even if the head was rewritten.
     */
    async verify(opts: { trustedPublicKey?: string | null; batch?: number; checkpointFloor?: number; macKey?: KeyObject | null } = {}): Promise<VerifyResult & { headSeq: number; checkpoints: number; unsigned?: number }> {
      const batch = opts.batch ?? 2000;
      // Taken before the head is read, so the head is at or past it (a commit moves both at once).
      const floors = { headSeq: floor.seq(), committed: floor.known(), ...(opts.checkpointFloor ? { checkpointSeq: opts.checkpointFloor } : {}) };
      const stored = await db.selectFrom('audit_checkpoints').selectAll().orderBy('seq').execute();
      // A scan of the whole log (no index on action): free of the statement timeout, which a large log would outlast.
      const published = await withoutStatementTimeout(db, (on) => on.selectFrom('audit_events').select(['seq', 'action', 'context']).where('action', '=', CHECKPOINT_ACTION).execute());
      const head = await db.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirstOrThrow();
      // The walk starts at 1: a row below it (inserted by hand; seqs are any bigint) would be listed and exported, never walked.
      const before = await db.selectFrom('audit_events').select('seq').where('seq', '<', 1).orderBy('seq').limit(1).executeTakeFirst();
      if (before) return { ok: false, events: 0, firstBadSeq: before.seq, problem: `event ${before.seq} lies before the first event: it was not appended by a commit`, headSeq: head.seq, checkpoints: stored.length };
      // A published checkpoint whose context cannot be read carries none: the walk names that event.
      const merged = mergeCheckpoints(stored, published.map((e) => ({ seq: e.seq, action: e.action, context: parseContext(e.context) ?? {} })), opts.trustedPublicKey ?? null);
      if (!merged.ok) return { ok: false, events: 0, firstBadSeq: merged.seq, problem: merged.problem, headSeq: head.seq, checkpoints: stored.length };
      // Up to the head read above: what is appended during the walk is the next walk's (it is not a cut tail).
      async function* events(): AsyncGenerator<StoredEvent> {
        for (let after = 0; ;) {
          const rows = await db.selectFrom('audit_events').selectAll().where('seq', '>', after).where('seq', '<=', head.seq).orderBy('seq').limit(batch).execute();
          for (const row of rows) yield storedFromRow(row);
          if (rows.length < batch) return;
          after = rows[rows.length - 1]!.seq;
        }
      }
      let macs: { key: KeyObject; keyedFrom: number } | undefined;
      if (opts.macKey) {
        const start = await macStart(db, head.seq);
        if ('problem' in start) return { ok: false, events: 0, firstBadSeq: start.firstBadSeq, problem: start.problem, headSeq: head.seq, checkpoints: stored.length };
        macs = { key: opts.macKey, keyedFrom: start.seq };
      }
      const result = await verifyLog({ events: events(), checkpoints: merged.checkpoints, head, trustedPublicKey: opts.trustedPublicKey ?? null, floors, rows: 'table', ...(macs ? { macs } : {}) });
      if (!result.ok) return { ...result, headSeq: head.seq };
      // Rows past the head are events no commit appended (a commit moves the head with them): the
      // last row first, then the head, which by then is at or past every row committed before it.
      const lastRow = await db.selectFrom('audit_events').select('seq').orderBy('seq', 'desc').limit(1).executeTakeFirst();
      const now = await db.selectFrom('audit_head').select('seq').where('id', '=', 1).executeTakeFirstOrThrow();
      if (lastRow && lastRow.seq > now.seq) {
        const past = await db.selectFrom('audit_events').select('seq').where('seq', '>', now.seq).orderBy('seq').limit(1).executeTakeFirstOrThrow();
        return { ok: false, events: result.events, firstBadSeq: past.seq, problem: `event ${past.seq} lies past the head (event ${now.seq}): it was not appended by a commit`, headSeq: head.seq, checkpoints: result.checkpoints };
      }
      return { ...result, headSeq: head.seq };
    },
  };
}

export type AuditLog = ReturnType<typeof createAuditLog>;
