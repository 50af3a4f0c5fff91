import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { collapseDenials } from './queries.ts';
import type { AuditEvent } from './event.ts';

const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string }) => e.code ?? String(e));

/** A minimal RFC 4180 reader, to prove the export parses back. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') quoted = false; else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(cell); cell = ''; } else if (c === '\r') continue;
    else if (c === '\n') { row.push(cell); rows.push(row); row = []; cell = ''; } else cell += c;
  }
  return rows;
}

describeEachDialect('audit queries: auditors read the trail, never values, only their tenant', (dialect) => {
  let h: Harness;
  let auditor: Awaited<ReturnType<typeof userContext>>;
  let reader: Awaited<ReturnType<typeof userContext>>;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'PAY_KEY', owner: 'ops' });
    await h.services.values.write(h.ctx, 'PAY_KEY', 'production', { value: 'v1', reason: 'needs, "quotes"\nand a newline' });
    auditor = await userContext(h, h.ctx.tenantId, 'audrey');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: auditor.id, role: 'auditor' });
    reader = await userContext(h, h.ctx.tenantId, 'rex');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: reader.id, role: 'revealer' });
    await h.services.values.read(reader.ctx(), 'PAY_KEY', 'production');
    await h.services.values.read(reader.ctx(), 'PAY_KEY', 'production');
  });
  after(() => h.close());

  test('an auditor reads the audit trail but no values; a revealer cannot read the trail', async () => {
    const listed = await h.services.auditQueries.list(auditor.ctx(), { action: 'secret.' });
    assert.ok(listed.items.some((e) => e.action === 'secret.reveal' && e.actor.id === reader.id));
    assert.equal(await code(h.services.values.read(auditor.ctx(), 'PAY_KEY', 'production')), 'FORBIDDEN');
    assert.equal(await code(h.services.auditQueries.list(reader.ctx())), 'FORBIDDEN');
  });

  test("another tenant's auditor never sees this tenant's events", async () => {
    const other = await h.services.tenants.create('audit-other');
    const theirs = await userContext(h, other.id, 'oscar');
    await h.services.grants.create(h.contextFor(other.id), { principalType: 'user', principalId: theirs.id, role: 'auditor' });
    const seen = await h.services.auditQueries.list(theirs.ctx(), {});
    assert.ok(seen.items.every((e) => e.tenantId === other.id));
    assert.equal(seen.items.some((e) => e.resource.name === 'PAY_KEY'), false);
  });

  test('identical denials within a minute collapse into one item with a count; a later one stands alone', async () => {
    const nobody = await userContext(h, h.ctx.tenantId, 'nobody');
    for (let i = 0; i < 5; i++) assert.equal(await code(h.services.values.read(nobody.ctx(), 'PAY_KEY', 'production')), 'FORBIDDEN');
    h.clock.advance(120_000);
    assert.equal(await code(h.services.values.read(nobody.ctx(), 'PAY_KEY', 'production')), 'FORBIDDEN');
    const denied = (await h.services.auditQueries.list(auditor.ctx(), { actor: nobody.id, outcome: 'denied' })).items;
    assert.deepEqual(denied.map((e) => e.repeat ?? 1), [5, 1]);
    const raw = await h.storage.db.selectFrom('audit_events').select('seq').where('actor_id', '=', nobody.id).execute();
    assert.equal(raw.length, 6, 'every denial is still stored; only the listing collapses');
    assert.equal(collapseDenials([{ outcome: 'allowed', time: 1 }, { outcome: 'allowed', time: 2 }] as AuditEvent[]).length, 2, 'allowed events never collapse');
  });

  test('filters by action, secret, outcome and time', async () => {
    const writes = await h.services.auditQueries.list(auditor.ctx(), { action: 'secret.write', secret: 'PAY_KEY' });
    assert.deepEqual(writes.items.map((e) => e.secretVersion), [1]);
    const future = await h.services.auditQueries.list(auditor.ctx(), { from: new Date(h.clock.now() + 3_600_000).toISOString() });
    assert.equal(future.items.length, 0);
  });

  test('the CSV export parses back, uncollapsed, quotes and newlines intact', async () => {
    let csv = '';
    for await (const chunk of h.services.auditQueries.export(auditor.ctx(), {}, 'csv')) csv += chunk;
    const rows = parseCsv(csv);
    assert.equal(rows[0]![0], 'seq');
    const header = rows[0]!;
    const write = rows.find((r) => r[header.indexOf('action')] === 'secret.write')!;
    assert.equal(JSON.parse(write[header.indexOf('context')]!).reason, 'needs, "quotes"\nand a newline');
    const stored = await h.storage.db.selectFrom('audit_events').select('seq').where('tenant_id', '=', h.ctx.tenantId).where('outcome', '=', 'denied').execute();
    assert.equal(rows.filter((r) => r[header.indexOf('outcome')] === 'denied').length, stored.length, 'every denial, uncollapsed');
    assert.equal(rows.length - 1, (await h.storage.db.selectFrom('audit_events').select('seq').where('tenant_id', '=', h.ctx.tenantId).execute()).length);
  });

  test('usage gives first and last use or reveal per actor', async () => {
    const usage = await h.services.auditQueries.usage(auditor.ctx(), 'PAY_KEY');
    const rex = usage.actors.find((a) => a.actorId === reader.id)!;
    assert.deepEqual([rex.action, rex.count], ['secret.reveal', 2]);
    assert.ok(rex.firstAt <= rex.lastAt);
  });

  test('over HTTP: list, export and verify', async () => {
    const root = { authorization: `Bearer ${h.rootToken}` };
    const list = await h.app.inject({ method: 'GET', url: '/v1/audit/events?action=secret.&limit=5', headers: root });
    assert.equal(list.statusCode, 200);
    assert.ok(list.json().items.length > 0);
    const exported = await h.app.inject({ method: 'GET', url: '/v1/audit/export?format=json', headers: root });
    assert.equal(exported.statusCode, 200);
    assert.match(String(exported.headers['content-type']), /ndjson/);
    const lines = exported.body.trim().split('\n').map((l) => JSON.parse(l) as AuditEvent);
    assert.deepEqual(lines.map((e) => e.seq), [...lines.map((e) => e.seq)].sort((a, b) => a - b));
    await h.services.checkpoints.checkpoint();
    const verified = await h.app.inject({ method: 'GET', url: '/v1/audit/verify', headers: root });
    assert.deepEqual([verified.json().ok, verified.json().checkpoints >= 1], [true, true]);
    const bad = await h.app.inject({ method: 'GET', url: '/v1/audit/events?nope=1', headers: root });
    assert.equal(bad.json().error.code, 'UNKNOWN_FIELD');
  });
});
