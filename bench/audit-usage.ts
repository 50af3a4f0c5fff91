import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { openStorage, type Storage } from '../src/storage/database.ts';
import { createUsageSummary } from '../src/modules/audit/usage-summary.ts';
import { createAuditQueryService } from '../src/modules/audit/query-service.ts';
import { systemClock } from '../src/platform/clock.ts';
import { createCleanup } from './lib/cleanup.ts';
import { createBenchSchema } from './lib/postgres.ts';

/**
 * `node bench/audit-usage.ts [--events 1000000] [--tail 5000] [--tenants 4]`: "first and last use of a secret"
 * (GET /v1/audit/usage) on a log of `--events` events (`--tenants` tenants, default 4; 400 secret names, 64 actors;
 * 90% of them allowed uses), answered by scanning the tenant's events (how it was answered before
 * the usage summary) and by the summary with `--tail` events not yet folded. Also the fold's own
 * speed, and the newest page of `audit list` and a page of `audit tail` on the same log. SQLite, and PostgreSQL when it answers. Not part of `npm run bench` (filling the log
 * takes a while). Prints `bench` lines; the scan is the baseline measured in the same run.
 */
const { values: flags } = parseArgs({ options: { events: { type: 'string' }, tail: { type: 'string' }, tenants: { type: 'string' } }, strict: true });
const EVENTS = Number(flags.events ?? 1_000_000);
const TAIL = Number(flags.tail ?? 5_000);
const TENANTS = Number(flags.tenants ?? 4);
// Secret S7's events (seq % 400 = 7) all belong to this tenant.
const QUERIED_TENANT = `t${7 % TENANTS}`;

async function fill(storage: Storage, from: number, to: number): Promise<void> {
  // Straight into the table (the chain's hashes are not what is measured); time rises with seq as in the server.
  const CHUNK = 500;
  for (let start = from; start < to; start += CHUNK) {
    const rows = [];
    for (let seq = start + 1; seq <= Math.min(to, start + CHUNK); seq++) {
      rows.push({
        seq, id: `e${seq}`, time: 1_780_000_000_000 + seq * 10, tenant_id: `t${seq % TENANTS}`, actor_type: 'machine', actor_id: `m${seq % 64}`,
        action: seq % 10 === 0 ? 'secret.write' : 'secret.use', resource_type: 'secret', resource_id: null, resource_name: `S${seq % 400}`,
        environment: 'production', secret_version: 1, outcome: 'allowed', reason: null, context: '{}', prev_hash: '', hash: '',
      });
    }
    await storage.db.insertInto('audit_events').values(rows).execute();
  }
  await sql`update audit_head set seq = ${to} where id = 1`.execute(storage.db);
}

/** Median wall time of `fn` over `n` calls, in ms. */
async function time(n: number, fn: () => Promise<unknown>): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  return ms.sort((a, b) => a - b)[Math.floor(n / 2)]!;
}

async function run(label: string, storage: Storage): Promise<void> {
  const summary = createUsageSummary({ db: storage.db, dialect: storage.dialect });
  const t0 = performance.now();
  await fill(storage, 0, EVENTS - TAIL);
  console.log(`# ${label}: ${EVENTS - TAIL} events written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  if (storage.dialect === 'postgres') await sql`analyze audit_events`.execute(storage.db);
  const f0 = performance.now();
  const folded = await summary.foldAll();
  const foldS = (performance.now() - f0) / 1000;
  await fill(storage, EVENTS - TAIL, EVENTS);
  const scan = () => storage.db.selectFrom('audit_events')
    .select((eb) => ['actor_type', 'actor_id', 'action', eb.fn.min('time').as('first'), eb.fn.max('time').as('last'), eb.fn.countAll().as('count')])
    .where('tenant_id', '=', QUERIED_TENANT).where('resource_type', '=', 'secret').where('resource_name', '=', 'S7')
    .where('action', 'in', ['secret.use', 'secret.reveal']).where('outcome', '=', 'allowed')
    .groupBy(['actor_type', 'actor_id', 'action']).execute();
  const [a, b] = [await scan(), await summary.usage(QUERIED_TENANT, 'S7')];
  if (a.length !== b.length || a.reduce((n, r) => n + Number(r.count), 0) !== b.reduce((n, r) => n + r.count, 0)) throw new Error('the summary and the scan disagree');
  const scanMs = await time(5, scan);
  const summaryMs = await time(21, () => summary.usage(QUERIED_TENANT, 'S7'));
  console.log(`bench audit_usage_scan_${label}_ms ${scanMs.toFixed(2)} ms`);
  console.log(`bench audit_usage_summary_${label}_ms ${summaryMs.toFixed(2)} ms`);
  console.log(`# ${label}: the summary answers ${(scanMs / summaryMs).toFixed(0)}x as fast as the scan (${EVENTS} events, ${TAIL} unfolded)`);
  console.log(`bench audit_usage_fold_${label}_events_per_s ${Math.round(folded / foldS)} events/s`);

  // The auditor's other everyday reads, through the query service itself: the newest page, and a tail page.
  const queries = createAuditQueryService({
    db: storage.db, authz: { require: async () => undefined }, clock: systemClock, usage: summary,
    log: { verify: async () => { throw new Error('not measured'); }, fingerprint: async () => '', record: async () => undefined },
    identifiers: { hash: () => { throw new Error('not measured'); } },
  });
  const ctx = { tenantId: QUERIED_TENANT, actor: { type: 'root' as const, id: 'bench', name: 'bench' }, requestId: 'bench' };
  const listMs = await time(21, () => queries.list(ctx, {}));
  const tailMs = await time(21, () => queries.tail(ctx, { after: EVENTS - 4_000 }));
  console.log(`bench audit_list_page_${label}_ms ${listMs.toFixed(2)} ms`);
  console.log(`bench audit_tail_page_${label}_ms ${tailMs.toFixed(2)} ms`);
}

const cleanup = createCleanup();
const dir = mkdtempSync(join(tmpdir(), 'keyhold-audit-usage-'));
cleanup.add('temp dir', async () => rmSync(dir, { recursive: true, force: true }));
try {
  const lite = await openStorage({ url: `sqlite:${join(dir, 'keyhold.db')}` });
  try {
    await run('sqlite', lite);
  } finally {
    await lite.close();
  }
  const schema = await createBenchSchema(cleanup);
  if ('unavailable' in schema) console.log(`# postgres skipped: ${schema.unavailable}`);
  else {
    const pg = await openStorage({ url: schema.url });
    try {
      await run('postgres', pg);
    } finally {
      await pg.close();
    }
  }
} finally {
  await cleanup.run();
}
