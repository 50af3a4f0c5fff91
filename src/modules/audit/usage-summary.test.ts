import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { dropAuditGuards } from '../../../test/helpers/audit-tampering.ts';
import type { AuditInput } from './audit-log.ts';
import type { AuditEvent } from './event.ts';
import type { UsageRow, UsageSummary } from './usage-summary.ts';

/** A small deterministic generator, so a failure replays. */
function random(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);
}

const SECRETS = ['PAY_KEY', 'DB_URL', 'UNUSED'];
const ACTORS: Array<AuditEvent['actor']> = [
  { type: 'machine', id: 'm-1' }, { type: 'machine', id: 'm-2' }, { type: 'user', id: 'u-1' }, { type: 'root', id: 'root' },
];
const ACTIONS = ['secret.use', 'secret.reveal', 'secret.write', 'secret.use'];
const OUTCOMES: Array<AuditEvent['outcome']> = ['allowed', 'allowed', 'allowed', 'denied', 'failed'];

describeEachDialect('audit usage summary: first and last use per secret and actor, folded from the log', (dialect) => {
  let h: Harness;
  let summary: UsageSummary;
  let tenants: string[];

  before(async () => {
    h = await createHarness(dialect);
    summary = h.services.auditUsage;
    tenants = [h.ctx.tenantId, (await h.services.tenants.create('usage-other')).id];
  });
  after(() => h.close());

  /** What usage must say: the same question answered by scanning every event. */
  async function scanned(tenantId: string, name: string): Promise<UsageRow[]> {
    const rows = await h.storage.db.selectFrom('audit_events')
      .select((eb) => ['actor_type', 'actor_id', 'action', eb.fn.min('time').as('first'), eb.fn.max('time').as('last'), eb.fn.countAll().as('count')])
      .where('tenant_id', '=', tenantId).where('resource_type', '=', 'secret').where('resource_name', '=', name)
      .where('action', 'in', ['secret.use', 'secret.reveal']).where('outcome', '=', 'allowed')
      .groupBy(['actor_type', 'actor_id', 'action']).execute();
    return sorted(rows.map((r) => ({ ...r, first: Number(r.first), last: Number(r.last), count: Number(r.count) })));
  }
  const sorted = (rows: UsageRow[]) => [...rows].sort((a, b) => `${a.actor_id}/${a.action}`.localeCompare(`${b.actor_id}/${b.action}`));

  async function assertExact(when: string): Promise<void> {
    for (const tenantId of tenants) {
      for (const name of SECRETS) {
        assert.deepEqual(sorted(await summary.usage(tenantId, name)), await scanned(tenantId, name), `${when}: ${name} in tenant ${tenantId}`);
      }
    }
  }

  function events(next: () => number, n: number): AuditInput[] {
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)]!;
    return Array.from({ length: n }, () => {
      const secret = next() < 0.9;
      return {
        tenantId: pick(tenants), actor: pick(ACTORS), action: secret ? pick(ACTIONS) : 'machine.create',
        resource: secret ? { type: 'secret', id: null, name: pick(SECRETS) } : { type: 'machine', id: 'x', name: 'x' },
        environment: 'production', outcome: pick(OUTCOMES),
      } satisfies AuditInput;
    });
  }

  test('answers exactly what a scan of every event answers, folded or not, across random appends, partial folds and clock steps back', async () => {
    const next = random(20261206);
    await assertExact('before anything');
    for (let step = 0; step < 40; step++) {
      // Mostly forward; now and then the wall clock steps back (NTP), so a later event can be earlier.
      h.clock.advance(Math.floor((next() - 0.2) * 3_600_000));
      await h.services.audit.record(events(next, 1 + Math.floor(next() * 12)));
      // Some steps fold a little, some not at all, some everything: the answer never changes with that.
      const r = next();
      if (r < 0.4) await summary.fold(1 + Math.floor(next() * 10));
      else if (r < 0.5) await summary.foldAll();
      if (step % 5 === 4) await assertExact(`step ${step}`);
    }
    await summary.foldAll();
    await assertExact('all folded');
    const [head, folded] = await Promise.all([
      h.storage.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow(),
      h.storage.db.selectFrom('audit_usage_head').select('seq').executeTakeFirstOrThrow(),
    ]);
    assert.equal(Number(folded.seq), Number(head.seq), 'the watermark reached the head');
    assert.equal(await summary.fold(), 0, 'nothing left to fold');
  });

  test('folds racing each other and readers neither count an event twice nor miss one', async () => {
    const next = random(7);
    for (let i = 0; i < 5; i++) await h.services.audit.record(events(next, 20));
    const answers = await Promise.all([
      ...Array.from({ length: 6 }, () => summary.fold(7)), summary.foldAll(3),
      ...SECRETS.map((name) => summary.usage(tenants[0]!, name)),
    ]);
    for (const [i, name] of SECRETS.entries()) {
      // Read while folds committed: each answer is whole (the scan after is the same, nothing new was appended).
      assert.deepEqual(sorted(answers[7 + i] as UsageRow[]), await scanned(tenants[0]!, name), `${name}, read during the folds`);
    }
    await summary.foldAll();
    await assertExact('after racing folds');
  });

  test('a fold that fails half-way leaves the summary and watermark as they were, and the next one catches up', async () => {
    const next = random(99);
    await summary.foldAll();
    await h.services.audit.record(events(next, 30).map((e) => ({ ...e, action: 'secret.use', outcome: 'allowed' as const, resource: { type: 'secret', id: null, name: 'PAY_KEY' } })));
    const before = await h.storage.db.selectFrom('audit_usage').selectAll().execute();
    const watermark = async () => Number((await h.storage.db.selectFrom('audit_usage_head').select('seq').executeTakeFirstOrThrow()).seq);
    const mark = await watermark();
    // The database refuses the fold's writes to the summary: as a crash between its statements would leave them, uncommitted.
    if (dialect === 'sqlite') {
      await sql`create trigger usage_poison before insert on audit_usage begin select raise(abort, 'poisoned'); end`.execute(h.storage.db);
    } else {
      await sql`create function usage_poison() returns trigger language plpgsql as $$ begin raise exception 'poisoned'; end $$`.execute(h.storage.db);
      await sql`create trigger usage_poison before insert on audit_usage for each row execute function usage_poison()`.execute(h.storage.db);
    }
    try {
      await assert.rejects(summary.fold(), /poisoned/);
      assert.equal(await watermark(), mark, 'the watermark did not move');
      assert.deepEqual(await h.storage.db.selectFrom('audit_usage').selectAll().execute(), before, 'the summary did not change');
      await assertExact('with a failed fold');
    } finally {
      await sql`drop trigger usage_poison${sql.raw(dialect === 'postgres' ? ' on audit_usage' : '')}`.execute(h.storage.db);
      if (dialect === 'postgres') await sql`drop function usage_poison()`.execute(h.storage.db);
    }
    assert.ok((await summary.foldAll()) >= 30);
    await assertExact('after the fold that followed');
  });

  test('a row inserted by hand past the head does not move the watermark over the events written up to it', async () => {
    await summary.foldAll();
    const head = Number((await h.storage.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq);
    const forged = { id: 'forged', time: h.clock.now(), tenant_id: tenants[0]!, actor_type: 'user', actor_id: 'intruder', action: 'secret.use',
      resource_type: 'secret', resource_id: null, resource_name: 'PAY_KEY', environment: 'production', secret_version: 1, outcome: 'allowed',
      reason: null, context: '{}', prev_hash: '0'.repeat(64), hash: 'f'.repeat(64) };
    await h.storage.db.insertInto('audit_events').values({ ...forged, seq: head + 3 }).execute();
    try {
      await summary.foldAll();
      const use = { tenantId: tenants[0]!, actor: ACTORS[0]!, action: 'secret.use', resource: { type: 'secret', id: null, name: 'PAY_KEY' }, outcome: 'allowed' } satisfies AuditInput;
      await h.services.audit.record([use, use]);
      await summary.foldAll();
      await assertExact('with a row past the head');
    } finally {
      await dropAuditGuards(h.storage.db, dialect);
      await sql`delete from audit_events where seq = ${head + 3}`.execute(h.storage.db);
    }
  });

  test('usage through the audit API shows a time no date can hold (a row written by hand) as the stored number, not a 500', async () => {
    const head = Number((await h.storage.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq);
    await h.storage.db.insertInto('audit_events').values({
      seq: head + 1000, id: 'forged', time: 9e15, tenant_id: h.ctx.tenantId, actor_type: 'user', actor_id: 'intruder', action: 'secret.use',
      resource_type: 'secret', resource_id: null, resource_name: 'FORGED_USE', environment: 'production', secret_version: 1, outcome: 'allowed',
      reason: null, context: '{}', prev_hash: '0'.repeat(64), hash: 'f'.repeat(64),
    }).execute();
    try {
      const usage = await h.services.auditQueries.usage(h.ctx, 'FORGED_USE');
      assert.deepEqual(usage.actors.map((a) => [a.actor.id, a.first, a.last, a.use?.last]), [['intruder', '9000000000000000', '9000000000000000', '9000000000000000']]);
    } finally {
      await dropAuditGuards(h.storage.db, dialect);
      await sql`delete from audit_events where seq = ${head + 1000}`.execute(h.storage.db);
    }
  });

  test('usage through the audit API reads the summary: the same answer before and after a fold', async () => {
    await h.services.secrets.create(h.ctx, { name: 'API_USED', owner: 'ops' });
    await h.services.values.write(h.ctx, 'API_USED', 'production', { value: 'usage-summary-canary' });
    await summary.foldAll();
    await h.services.values.read(h.ctx, 'API_USED', 'production');
    h.clock.advance(60_000);
    const unfolded = await h.services.auditQueries.usage(h.ctx, 'API_USED');
    await summary.foldAll();
    await h.services.values.read(h.ctx, 'API_USED', 'production');
    const folded = await h.services.auditQueries.usage(h.ctx, 'API_USED');
    assert.equal(unfolded.actors[0]!.count, 1);
    assert.deepEqual(folded.actors.map((a) => [a.actor.id, a.count, a.first, a.reveal?.count]), [['test-root', 2, unfolded.actors[0]!.first, 2]]);
    assert.notEqual(folded.actors[0]!.last, unfolded.actors[0]!.last, 'the read after the fold is the last one');
  });
});
