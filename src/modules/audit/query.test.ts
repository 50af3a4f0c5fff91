import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { CompiledQuery } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { call, newUser, sessionFor } from '../../../test/helpers/users.ts';
import { collect, parseCsv } from '../../../test/helpers/exports.ts';
import type { TenantContext } from '../shared/context.ts';
import { AUDIT_CSV_COLUMNS, csvField } from './csv.ts';
import { createChainVerifier } from './chain.ts';
import type { AuditEvent } from './event.ts';
import type { AuditQueryService } from './query-service.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

const VALUE = 'query-canary-5b1e';
const REASON = 'rotated, "by hand", after the incident';

describeEachDialect('audit queries: auditors read the trail of their own tenant, never values', (dialect) => {
  let h: Harness;
  let q: AuditQueryService;
  let tenantId: string;
  let auditor: { id: string; ctx: () => TenantContext };
  let nobody: { id: string; ctx: () => TenantContext };

  before(async () => {
    h = await createHarness(dialect);
    tenantId = h.ctx.tenantId;
    q = h.services.auditQueries;
    await h.services.secrets.create(h.ctx, { name: 'PAY_KEY', owner: 'ops' });
    await h.services.values.write(h.ctx, 'PAY_KEY', 'production', { value: VALUE, reason: REASON });
    await h.services.values.read(h.ctx, 'PAY_KEY', 'production');
    auditor = await userContext(h, tenantId, 'audrey');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: auditor.id, role: 'auditor' });
    nobody = await userContext(h, tenantId, 'nobody');
  });
  after(() => h.close());

  const tenantEvents = () => h.storage.db.selectFrom('audit_events').selectAll().where('tenant_id', '=', tenantId).orderBy('seq').execute();

  test('an auditor reads the audit trail but no values', async () => {
    const page = await q.list(auditor.ctx(), { order: 'asc' });
    assert.deepEqual(page.items.slice(0, 4).map((e) => [e.action, e.resource.name, e.secretVersion]), [
      ['tenant.create', 'default', null], ['secret.create', 'PAY_KEY', null], ['secret.write', 'PAY_KEY', 1], ['secret.reveal', 'PAY_KEY', 1],
    ]);
    assert.equal(page.items[2]!.context.reason, REASON);
    assert.equal(await codeOf(h.services.values.read(auditor.ctx(), 'PAY_KEY', 'production')), 'FORBIDDEN');
    const everything = JSON.stringify([page, await collect(await q.export(auditor.ctx(), {}, 'json')), await collect(await q.export(auditor.ctx(), {}, 'csv'))]);
    assert.equal(everything.includes(VALUE), false, 'no value in any listing or export');
  });

  test('a user without audit:read is refused every query, and its denial is itself an event', async () => {
    const ctx = nobody.ctx();
    const codes = await Promise.all([q.list(ctx), q.tail(ctx), q.export(ctx, {}, 'csv'), q.usage(ctx, 'PAY_KEY'), q.verify(ctx)].map(codeOf));
    assert.deepEqual(codes, Array(5).fill('FORBIDDEN'));
    const denials = await q.list(auditor.ctx(), { actor: nobody.id, action: 'authz.audit:read' });
    assert.deepEqual(denials.items.map((e) => [e.outcome, e.repeat]), [['denied', 5]], 'five refusals in the same second, listed once');
  });

  test('only the root principal reads every tenant, system events included', async () => {
    assert.equal(await codeOf(q.list(auditor.ctx(), { allTenants: true })), 'FORBIDDEN');
    assert.equal(await codeOf(q.tail(auditor.ctx(), { allTenants: true })), 'FORBIDDEN');
    const all = await q.list(h.ctx, { allTenants: true, order: 'asc', limit: 3 });
    assert.deepEqual(all.items.map((e) => [e.action, e.tenantId]), [['tenant.create', tenantId], ['system.init', null], ['system.unseal', null]]);
    assert.ok((await q.list(h.ctx, {})).items.every((e) => e.tenantId === tenantId), 'root without allTenants sees the tenant it acts in');
  });

  test("tenant B's auditor never sees tenant A's events, in any query", async () => {
    const b = await h.services.tenants.create('audit-b');
    const rootB = h.contextFor(b.id);
    await h.services.secrets.create(rootB, { name: 'PAY_KEY', owner: 'b-ops' });
    await h.services.values.write(rootB, 'PAY_KEY', 'production', { value: 'b-value' });
    const bob = await userContext(h, b.id, 'bob');
    await h.services.grants.create(rootB, { principalType: 'user', principalId: bob.id, role: 'auditor' });

    const seen: AuditEvent[] = [
      ...(await q.list(bob.ctx(), { limit: 1000 })).items, ...(await q.tail(bob.ctx(), { after: 0, limit: 1000 })).items,
      ...(await collect(await q.export(bob.ctx(), {}, 'json'))).trim().split('\n').map((l) => JSON.parse(l) as AuditEvent),
    ];
    assert.ok(seen.length >= 6);
    assert.deepEqual([...new Set(seen.map((e) => e.tenantId))], [b.id]);
    assert.deepEqual((await q.usage(bob.ctx(), 'PAY_KEY')).actors, [], "A's reveal of its own PAY_KEY is not B's usage");
    assert.ok((await q.list(auditor.ctx(), { limit: 1000 })).items.every((e) => e.tenantId === tenantId), 'nor the other way round');
    // A token of tenant A naming tenant B is refused before any query runs (the auth hook), so only the service scope matters here.
    assert.equal(await codeOf(q.list({ ...bob.ctx(), tenantId }, {})), 'FORBIDDEN', "B's auditor acting in A has no grant there");
  });

  test('filters: action exact and prefix, actor, secret, outcome, time range; bad input is refused', async () => {
    const ctx = auditor.ctx();
    const actions = async (f: Parameters<AuditQueryService['list']>[1]) => (await q.list(ctx, { order: 'asc', ...f })).items.map((e) => e.action);
    assert.deepEqual(await actions({ action: 'secret.write' }), ['secret.write']);
    assert.deepEqual(await actions({ action: 'secret.', secret: 'PAY_KEY' }), ['secret.create', 'secret.write', 'secret.reveal']);
    assert.deepEqual(await actions({ action: 'SECRET.' }), [], 'prefixes are case-sensitive on both dialects');
    assert.deepEqual(await actions({ action: 'secret_' }), [], 'no wildcards');
    assert.ok((await actions({ actor: nobody.id })).every((a) => a === 'authz.audit:read'));
    assert.ok((await q.list(ctx, { outcome: 'denied' })).items.every((e) => e.outcome === 'denied'));
    assert.deepEqual(await actions({ secret: 'NO_SUCH' }), []);

    const start = h.clock.now();
    h.clock.advance(3_600_000);
    await h.services.values.read(h.ctx, 'PAY_KEY', 'production');
    const hourLater = new Date(start + 3_600_000).toISOString();
    assert.deepEqual(await actions({ from: hourLater }), ['secret.reveal']);
    assert.deepEqual(await actions({ to: hourLater, secret: 'PAY_KEY' }), ['secret.create', 'secret.write', 'secret.reveal', 'authz.reveal'], 'to is exclusive: not the reveal at that instant');

    assert.equal(await codeOf(q.list(ctx, { from: 'yesterday' })), 'VALIDATION_FAILED');
    assert.equal(await codeOf(q.export(ctx, { to: 'soon' }, 'csv')), 'VALIDATION_FAILED', 'before the first byte');
    assert.equal(await codeOf(q.list(ctx, { limit: 1001 })), 'VALIDATION_FAILED');
    // A range that cannot hold an event is a mistake (dates swapped), not an answer: an empty export would read as "nothing happened".
    const exportsBefore = (await q.list(h.ctx, { action: 'audit.export', allTenants: true, limit: 1000 })).items.length;
    assert.equal(await codeOf(q.export(ctx, { from: hourLater, to: new Date(start).toISOString() }, 'json')), 'VALIDATION_FAILED', 'to before from');
    assert.equal(await codeOf(q.list(ctx, { from: hourLater, to: hourLater })), 'VALIDATION_FAILED', 'to is exclusive: an empty range');
    assert.equal((await q.list(h.ctx, { action: 'audit.export', allTenants: true, limit: 1000 })).items.length, exportsBefore, 'a refused export is not recorded as taken');
  });

  test('pages in either order cover every event once, and tail follows from a sequence number', async () => {
    const ctx = auditor.ctx();
    const stored = (await tenantEvents()).map((e) => e.seq);
    for (const order of ['asc', 'desc'] as const) {
      const covered: number[] = [];
      const firsts: number[] = [];
      let after: number | undefined;
      for (;;) {
        const page = await q.list(ctx, { order, limit: 2, ...(after !== undefined ? { after } : {}) });
        // A collapsed item stands for the consecutive events from its seq to its lastSeq.
        for (const item of page.items) {
          firsts.push(item.seq);
          covered.push(...stored.filter((s) => s >= item.seq && s <= item.lastSeq));
        }
        if (page.next === null) break;
        after = page.next;
      }
      assert.deepEqual([...covered].sort((x, y) => x - y), stored, `${order}: every event once`);
      assert.deepEqual(firsts, [...firsts].sort((x, y) => (order === 'asc' ? x - y : y - x)), `${order}: in order`);
    }
    const latest = await q.tail(ctx, { limit: 2 });
    assert.deepEqual(latest.items.map((e) => e.seq), stored.slice(-2), 'without after: the latest, oldest first');
    assert.deepEqual(await q.tail(ctx, { after: latest.next }), { items: [], next: latest.next });
    await h.services.values.read(h.ctx, 'PAY_KEY', 'production');
    const next = await q.tail(ctx, { after: latest.next });
    assert.deepEqual(next.items.map((e) => e.action), ['secret.reveal']);
    assert.equal(next.next, next.items[0]!.seq);
  });

  test('the newest page and a tail page are read in seq order from an index, never by sorting the tenant\'s history', async () => {
    // SQLite only: PostgreSQL walks the primary key (docs/benchmarks.md, "Audit pages and tails").
    if (dialect !== 'sqlite') return;
    const plan = (q: { compile(): { sql: string; parameters: readonly unknown[] } }) => {
      const { sql: text, parameters } = q.compile();
      return h.storage.db.executeQuery<{ detail: string }>(CompiledQuery.raw(`explain query plan ${text}`, [...parameters]));
    };
    const newest = h.storage.db.selectFrom('audit_events').selectAll().where('tenant_id', '=', tenantId).orderBy('seq', 'desc').limit(101);
    const tail = h.storage.db.selectFrom('audit_events').selectAll().where('tenant_id', '=', tenantId).where('seq', '>', 10).orderBy('seq', 'asc').limit(1000);
    for (const q of [newest, tail]) {
      const details = (await plan(q)).rows.map((r) => r.detail).join(' | ');
      assert.match(details, /audit_events_tenant_seq/, details);
      assert.doesNotMatch(details, /TEMP B-TREE/, details);
    }
  });

  test('5 identical denials within a minute are one item with repeat 5; a sixth 2 minutes later is its own', async () => {
    await h.services.secrets.create(h.ctx, { name: 'LOCKED', owner: 'ops' });
    await h.services.values.write(h.ctx, 'LOCKED', 'production', { value: 'x' });
    const denied = () => h.services.values.read(nobody.ctx(), 'LOCKED', 'production');
    for (let i = 0; i < 5; i++) {
      assert.equal(await codeOf(denied()), 'SECRET_NOT_FOUND');
      h.clock.advance(10_000);
    }
    h.clock.advance(120_000);
    assert.equal(await codeOf(denied()), 'SECRET_NOT_FOUND');
    await h.services.values.read(h.ctx, 'LOCKED', 'production');
    await h.services.values.read(h.ctx, 'LOCKED', 'production');

    const asc = (await q.list(auditor.ctx(), { secret: 'LOCKED', order: 'asc' })).items;
    assert.deepEqual(asc.map((e) => [e.action, e.outcome, e.repeat]), [
      ['secret.create', 'allowed', 1], ['secret.write', 'allowed', 1], ['authz.reveal', 'denied', 5], ['authz.reveal', 'denied', 1],
      ['secret.reveal', 'allowed', 1], ['secret.reveal', 'allowed', 1],
    ], 'allowed events are never collapsed');
    const run = asc[2]!;
    assert.equal(run.lastTime - run.time, 40_000);
    assert.equal(run.lastSeq - run.seq, 4, 'nothing else happened in between');
    const desc = (await q.list(auditor.ctx(), { secret: 'LOCKED' })).items;
    assert.deepEqual(desc.map((e) => e.repeat), [1, 1, 1, 5, 1, 1]);
    assert.deepEqual(desc[3], run, 'the same item, newest first');

    const first = await q.list(auditor.ctx(), { secret: 'LOCKED', outcome: 'denied', order: 'asc', limit: 1 });
    assert.deepEqual(first.items.map((e) => e.repeat), [5], 'a run is never split across pages');
    assert.equal(first.next, run.lastSeq);
    const second = await q.list(auditor.ctx(), { secret: 'LOCKED', outcome: 'denied', order: 'asc', limit: 1, after: first.next! });
    assert.deepEqual([second.items.map((e) => e.repeat), second.next], [[1], null]);
  });

  test('the CSV export parses back with quotes, commas and line breaks intact, one record per event, none collapsed', async () => {
    const csv = await collect(await q.export(auditor.ctx(), {}, 'csv'));
    const [header, ...records] = parseCsv(csv);
    assert.deepEqual(header, [...AUDIT_CSV_COLUMNS]);
    const stored = await tenantEvents();
    assert.equal(records.length, stored.length);
    const col = (name: (typeof AUDIT_CSV_COLUMNS)[number]) => AUDIT_CSV_COLUMNS.indexOf(name);
    for (const [i, r] of records.entries()) {
      const e = stored[i]!;
      assert.deepEqual([Number(r[col('seq')]), r[col('hash')], r[col('action')], JSON.parse(r[col('context')]!)], [e.seq, e.hash, e.action, JSON.parse(e.context)]);
      assert.equal(Date.parse(r[col('time')]!), e.time);
    }
    const write = records.find((r) => r[col('action')] === 'secret.write')!;
    assert.equal(JSON.parse(write[col('context')]!).reason, REASON);
    assert.equal(records.filter((r) => r[col('resource_name')] === 'LOCKED' && r[col('outcome')] === 'denied').length, 6);

    const tricky = ['plain', 'a,b', 'say "hi"', 'two\r\nlines', 'lf\nonly', '', '"'];
    assert.deepEqual(parseCsv(tricky.map(csvField).join(',') + '\r\n'), [tricky]);

    const lines = (await collect(await q.export(auditor.ctx(), { secret: 'LOCKED', outcome: 'denied' }, 'json'))).split('\n');
    assert.equal(lines.pop(), '', 'every line ends in a newline');
    assert.deepEqual(lines.map((l) => (JSON.parse(l) as AuditEvent).outcome), Array(6).fill('denied'));
  });

  test('usage gives first and last use and reveal per actor, allowed only', async () => {
    await h.services.secrets.create(h.ctx, { name: 'USED', owner: 'ops' });
    await h.services.values.write(h.ctx, 'USED', 'production', { value: 'u' });
    const m = await h.services.machines.create(h.ctx, { name: 'usage-bot', kind: 'client_secret' });
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: m.id, role: 'builder' });
    const bot: TenantContext = { tenantId, requestId: 'test', actor: { type: 'machine', id: m.id, name: 'usage-bot', homeTenantId: tenantId } };
    const t0 = h.clock.now();
    await h.services.values.read(h.ctx, 'USED', 'production');
    for (let i = 0; i < 3; i++) {
      h.clock.advance(60_000);
      await h.services.values.read(bot, 'USED', 'production');
    }
    h.clock.advance(86_400_000);
    await h.services.values.read(h.ctx, 'USED', 'production');
    assert.equal(await codeOf(h.services.values.read(nobody.ctx(), 'USED', 'production')), 'SECRET_NOT_FOUND');

    const usage = await q.usage(auditor.ctx(), 'USED');
    const at = (ms: number) => new Date(ms).toISOString();
    assert.deepEqual(usage, {
      secret: 'USED',
      actors: [
        { actor: { type: 'root', id: 'test-root' }, first: at(t0), last: at(t0 + 180_000 + 86_400_000), count: 2, use: null, reveal: { first: at(t0), last: at(t0 + 180_000 + 86_400_000), count: 2 } },
        { actor: { type: 'machine', id: m.id }, first: at(t0 + 60_000), last: at(t0 + 180_000), count: 3, use: { first: at(t0 + 60_000), last: at(t0 + 180_000), count: 3 }, reveal: null },
      ],
    });
    assert.deepEqual((await q.usage(auditor.ctx(), 'NEVER_USED')).actors, []);
  });

  test('verify answers for a tenant auditor with the result only', async () => {
    await h.services.checkpoints.checkpoint();
    const r = await q.verify(auditor.ctx());
    assert.deepEqual(Object.keys(r).sort(), ['checkpoints', 'events', 'firstBadSeq', 'headSeq', 'lastSeq', 'ok', 'problem', 'unsigned']);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.lastSeq, r.headSeq);
    assert.ok(r.checkpoints >= 1);

    // A whole-log JSON export is the stored events as they are: the chain verifies offline from it.
    const lines = (await collect(await q.export(h.ctx, { allTenants: true }, 'json'))).trim().split('\n');
    const verifier = createChainVerifier();
    for (const line of lines) verifier.push(JSON.parse(line) as AuditEvent);
    const head = await h.storage.db.selectFrom('audit_head').select(['seq', 'hash']).executeTakeFirstOrThrow();
    assert.deepEqual(verifier.result(), { ok: true, events: head.seq, lastSeq: head.seq, lastHash: head.hash });
    assert.equal(await codeOf(q.export(auditor.ctx(), { allTenants: true }, 'json')), 'FORBIDDEN');
  });

  test('over HTTP: list, tail, export (JSON lines and CSV), usage and verify, with strict querystrings', async () => {
    const headers = { authorization: `Bearer ${h.rootToken}` };
    const get = (url: string) => h.app.inject({ method: 'GET', url, headers });

    const list = await get('/v1/audit/events?secret=LOCKED&outcome=denied&order=asc&limit=1');
    assert.equal(list.statusCode, 200, list.body);
    assert.deepEqual(list.json().items.map((e: { repeat: number }) => e.repeat), [5]);
    assert.equal(typeof list.json().next, 'number');
    assert.equal(list.json().items[0].context.requestId.length > 0, true, 'context survives serialization');

    const tail = await get('/v1/audit/tail?after=0&limit=2');
    assert.deepEqual([tail.statusCode, tail.json().items.length, tail.json().next], [200, 2, tail.json().items[1].seq]);

    const csv = await get('/v1/audit/export?format=csv&secret=LOCKED');
    assert.equal(csv.statusCode, 200);
    assert.match(String(csv.headers['content-type']), /^text\/csv/);
    assert.match(String(csv.headers['content-disposition']), /^attachment; filename="keyhold-audit\.csv"$/);
    assert.equal(csv.headers['cache-control'], 'no-store');
    const records = parseCsv(csv.body);
    assert.equal(records.length - 1, (await tenantEvents()).filter((e) => e.resource_name === 'LOCKED').length);

    const jsonl = await get('/v1/audit/export');
    assert.match(String(jsonl.headers['content-type']), /^application\/x-ndjson/);
    const events = jsonl.body.trim().split('\n').map((l) => JSON.parse(l) as AuditEvent);
    assert.deepEqual(events.map((e) => e.seq), (await tenantEvents()).map((e) => e.seq));

    const usage = await get('/v1/audit/usage?secret=USED');
    assert.deepEqual([usage.statusCode, usage.json().actors.length], [200, 2]);
    const verify = await get('/v1/audit/verify');
    assert.deepEqual([verify.statusCode, verify.json().ok], [200, true]);

    for (const [url, expected] of [
      ['/v1/audit/events?bogus=1', 400], ['/v1/audit/events?limit=5000', 400], ['/v1/audit/events?from=yesterday', 400],
      ['/v1/audit/export?format=xml', 400], ['/v1/audit/usage', 400], ['/v1/audit/tail?after=-1', 400],
    ] as const) {
      const res = await get(url);
      assert.equal(res.statusCode, expected, `${url}: ${res.body}`);
      assert.equal(typeof res.json().error.code, 'string');
    }
    assert.equal((await get('/v1/audit/events?bogus=1')).json().error.code, 'UNKNOWN_FIELD');
    const anonymous = await h.app.inject({ method: 'GET', url: '/v1/audit/export' });
    assert.equal(anonymous.json().error.code, 'UNAUTHENTICATED');

    // A signed-in person: refused until granted the auditor role, then confined to their tenant.
    const person = await newUser(h, 'http-auditor');
    const session = { authorization: `Bearer ${await sessionFor(h, person.username)}` };
    const refused = await h.app.inject({ method: 'GET', url: '/v1/audit/export?format=csv', headers: session });
    assert.deepEqual([refused.statusCode, refused.json().error.code], [403, 'FORBIDDEN']);
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: person.id, role: 'auditor' });
    const allowed = await h.app.inject({ method: 'GET', url: '/v1/audit/events?limit=1000', headers: session });
    assert.equal(allowed.statusCode, 200);
    assert.ok(allowed.json().items.every((e: AuditEvent) => e.tenantId === tenantId));
    const elsewhere = await h.app.inject({ method: 'GET', url: '/v1/audit/events', headers: { ...session, 'x-keyhold-tenant': 'audit-b' } });
    assert.equal(elsewhere.json().error.code, 'TENANT_NOT_FOUND');
    const everyTenant = await h.app.inject({ method: 'GET', url: '/v1/audit/events?allTenants=true', headers: session });
    assert.equal(everyTenant.json().error.code, 'FORBIDDEN');
  });

  test('an export filtered by a name no secret has records its keyed HMAC, never the text: it may be a pasted value', async () => {
    const exportEvent = async () => JSON.parse((await h.storage.db.selectFrom('audit_events').select('context').where('action', '=', 'audit.export')
      .orderBy('seq', 'desc').executeTakeFirstOrThrow()).context) as Record<string, string>;
    await collect(await q.export(auditor.ctx(), { secret: 'PAY_KEY' }, 'json'));
    assert.equal((await exportEvent()).secret, 'PAY_KEY', 'a secret of the tenant is named as it is');
    await collect(await q.export(auditor.ctx(), { secret: VALUE }, 'csv'));
    assert.match((await exportEvent()).secret!, /^hmac-sha256:[0-9a-f]{32}$/);
    await collect(await q.export(h.ctx, { secret: VALUE, allTenants: true }, 'json'));
    assert.match((await exportEvent()).secret!, /^hmac-sha256:[0-9a-f]{32}$/, 'every tenant: still no such secret');
    const everything = JSON.stringify(await h.storage.db.selectFrom('audit_events').selectAll().execute());
    assert.equal(everything.includes(VALUE), false, 'the value is nowhere in the audit log');
  });

  test('an export filtered by an actor id no one has records its keyed HMAC; a real actor is named as it is', async () => {
    const exportEvent = async () => JSON.parse((await h.storage.db.selectFrom('audit_events').select('context').where('action', '=', 'audit.export')
      .orderBy('seq', 'desc').executeTakeFirstOrThrow()).context) as Record<string, string>;
    await collect(await q.export(auditor.ctx(), { actor: VALUE }, 'json'));
    assert.match((await exportEvent()).actor!, /^hmac-sha256:[0-9a-f]{32}$/);
    const person = await newUser(h, 'actor-filter');
    await collect(await q.export(auditor.ctx(), { actor: person.id }, 'csv'));
    assert.equal((await exportEvent()).actor, person.id);
    await collect(await q.export(auditor.ctx(), { actor: 'keyhold' }, 'json'));
    assert.equal((await exportEvent()).actor, 'keyhold');
    const everything = JSON.stringify(await h.storage.db.selectFrom('audit_events').selectAll().execute());
    assert.equal(everything.includes(VALUE), false, 'the value is nowhere in the audit log');
  });

  test('an export filtered by a secret name or actor id that exists only in another tenant records the keyed HMAC: the record says nothing of other tenants', async () => {
    const exportEvent = async () => JSON.parse((await h.storage.db.selectFrom('audit_events').select('context').where('action', '=', 'audit.export')
      .orderBy('seq', 'desc').executeTakeFirstOrThrow()).context) as Record<string, string>;
    const other = await h.services.tenants.create('export-filter-other');
    await h.services.secrets.create(h.contextFor(other.id), { name: 'THEIRS_ONLY_KEY', owner: 'ops' });
    const stranger = await userContext(h, other.id, 'stranger');
    await collect(await q.export(auditor.ctx(), { secret: 'THEIRS_ONLY_KEY' }, 'json'));
    assert.match((await exportEvent()).secret!, /^hmac-sha256:[0-9a-f]{32}$/, 'another tenant\'s secret name is not confirmed');
    await collect(await q.export(auditor.ctx(), { actor: stranger.id }, 'json'));
    assert.match((await exportEvent()).actor!, /^hmac-sha256:[0-9a-f]{32}$/, 'another tenant\'s user id is not confirmed');
    // Read across every tenant, both exist as they are.
    await collect(await q.export(h.ctx, { secret: 'THEIRS_ONLY_KEY', actor: stranger.id, allTenants: true }, 'json'));
    const everyTenant = await exportEvent();
    assert.deepEqual([everyTenant.secret, everyTenant.actor], ['THEIRS_ONLY_KEY', stranger.id]);
  });

  test('two revoked sessions tried from one address within a minute are two items in the list, not one', async () => {
    const victims = [await newUser(h, 'revoked-a'), await newUser(h, 'revoked-b')];
    const tokens = await Promise.all(victims.map((v) => sessionFor(h, v.username)));
    for (const token of tokens) assert.equal((await call(h, 'POST', '/v1/auth/logout', { token })).status, 204);
    for (const token of [...tokens, tokens[0]!]) assert.equal((await call(h, 'GET', '/v1/secrets', { token, ip: '203.0.113.9' })).status, 401);

    const refused = (await q.list(auditor.ctx(), { action: 'auth.refused', order: 'asc' })).items.filter((e) => e.context.sourceIp === '203.0.113.9');
    const sessions = await h.storage.db.selectFrom('sessions').select(['id', 'user_id']).where('user_id', 'in', victims.map((v) => v.id)).execute();
    const sessionOf = (userId: string) => sessions.find((s) => s.user_id === userId)!.id;
    assert.deepEqual(refused.map((e) => [e.context.credentialId, e.repeat]), [[sessionOf(victims[0]!.id), 1], [sessionOf(victims[1]!.id), 1], [sessionOf(victims[0]!.id), 1]],
      "the second victim's session is an item of its own: a list must not fold it into the first one's");
  });
});
