import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { runCli } from '../../../test/helpers/cli.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { newUser, sessionFor } from '../../../test/helpers/users.ts';
import { VERIFY_MAX_AGE_MS } from '../../modules/audit/verify-gate.ts';

/** The audit commands in-process against a real Keyhold app (fetch answered by fastify's inject). */

let h: Harness;
let dir: string;
const paths: string[] = [];
let onRequest: (path: string) => void = () => {};

describe('keyhold audit', () => {
  before(async () => {
    h = await createHarness('sqlite');
    dir = mkdtempSync(join(tmpdir(), 'keyhold-audit-cli-'));
    await h.services.secrets.create(h.ctx, { name: 'PAY_KEY', owner: 'ops' });
    await h.services.values.write(h.ctx, 'PAY_KEY', 'production', { value: 'cli-canary-93', reason: 'first, "initial" load' });
    await h.services.values.read(h.ctx, 'PAY_KEY', 'production');
    const nobody = await userContext(h, h.ctx.tenantId, 'nobody');
    for (let i = 0; i < 3; i++) await h.services.values.read(nobody.ctx(), 'PAY_KEY', 'production').catch(() => {});
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await h.close();
  });

  const run = (argv: string[], opts: { token?: string; signal?: AbortSignal } = {}) => runCli(h.app, argv, {
    token: opts.token ?? h.rootToken, ...(opts.signal ? { signal: opts.signal } : {}),
    onAnswered: (r) => {
      paths.push(r.url);
      onRequest(r.path);
    },
  });

  test('list shows a table with repeated denials counted once, filters by flags, and names the next page', async () => {
    const res = await run(['audit', 'list', '--secret', 'PAY_KEY']);
    assert.equal(res.code, 0, res.stderr);
    const lines = res.stdout.trim().split('\n');
    assert.match(lines[0]!, /^SEQ\s+TIME\s+OUTCOME\s+ACTION\s+ACTOR/);
    assert.match(lines[1]!, /denied x3\s+authz\.reveal\s+user:\S+\s+PAY_KEY\s+production/, 'newest first, three denials in one row');
    assert.equal(lines.length, 5);

    const page = await run(['audit', 'list', '--action', 'secret.', '--oldest-first', '--limit', '1', '--json']);
    const body = JSON.parse(page.stdout) as { items: Array<{ action: string }>; next: number | null };
    assert.deepEqual([body.items.map((e) => e.action), typeof body.next], [['secret.create'], 'number']);
    const human = await run(['audit', 'list', '--limit', '1']);
    assert.match(human.stderr, /More: add --after \d+/);

    const bad = await run(['audit', 'list', '--from', 'last tuesday']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--from must be an ISO 8601 time/);
    assert.equal((await run(['audit', 'list', '--outcome', 'maybe'])).code, 2);
    assert.equal((await run(['audit', 'list', '--from', '2026-06-01', '--to', '2026-06-02', '--json'])).code, 0, 'a bare date is a time');
  });

  test('tail prints the latest events, or those after a sequence number, one per line', async () => {
    const latest = await run(['audit', 'tail', '--json']);
    assert.equal(latest.code, 0, latest.stderr);
    const events = latest.stdout.trim().split('\n').map((l) => JSON.parse(l) as { seq: number; action: string });
    assert.ok(events.length > 0 && events.length <= 20);
    assert.deepEqual(events.map((e) => e.seq), [...events.map((e) => e.seq)].sort((a, b) => a - b), 'oldest first');

    const from = events[events.length - 3]!.seq;
    const after = await run(['audit', 'tail', '--after', String(from)]);
    const lines = after.stdout.trim().split('\n');
    assert.equal(lines.length, 2);
    assert.match(lines[1]!, /^\d{4}-\d\d-\d\dT\S+Z {2}#\d+ {2}denied {3}authz\.reveal {2}user:\S+ {2}PAY_KEY@production \(FORBIDDEN\)$/);
  });

  test('tail --follow polls for new events until interrupted', async () => {
    const stop = new AbortController();
    let tails = 0;
    onRequest = (path) => {
      if (path !== '/v1/audit/tail') return;
      tails++;
      if (tails === 1) void h.services.values.write(h.ctx, 'PAY_KEY', 'production', { value: 'cli-canary-94' });
      if (tails === 2) stop.abort();
    };
    const started = Date.now();
    try {
      const res = await run(['audit', 'tail', '--follow'], { signal: stop.signal });
      assert.equal(res.code, 0, res.stderr);
      assert.equal(tails, 2);
      assert.ok(Date.now() - started >= 900, 'it waited about a second between polls');
      assert.match(res.stdout.trim().split('\n').pop()!, /allowed\s+secret\.write\s+root:test-root\s+PAY_KEY@production v2$/);
      assert.ok(paths.at(-1)!.includes('after='), 'later polls continue from the last event seen');
    } finally {
      onRequest = () => {};
    }
  });

  test('export writes CSV to a file only once complete, or JSON lines to stdout', async () => {
    const file = join(dir, 'audit.csv');
    const res = await run(['audit', 'export', '--format', 'csv', '--out', file]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /Wrote the CSV export to/);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const csv = readFileSync(file, 'utf8');
    assert.ok(csv.startsWith('seq,id,time,tenant_id,'));
    assert.ok(csv.includes('"{""requestId"":""test"",""reason"":""first, \\""initial\\"" load""}"'), 'the context column, quoted per RFC 4180');
    assert.equal(csv.includes('cli-canary'), false, 'no value');
    // The download goes to "<file>.<random>.partial" first: none may be left beside the export.
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.partial')), [], 'no partial file left behind');

    const jsonl = await run(['audit', 'export', '--secret', 'PAY_KEY', '--outcome', 'denied']);
    assert.equal(jsonl.code, 0, jsonl.stderr);
    assert.deepEqual(jsonl.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { outcome: string }).outcome), ['denied', 'denied', 'denied'], 'uncollapsed');
    assert.ok(paths.at(-1)!.startsWith('/v1/audit/export?'));

    const person = await newUser(h, 'no-audit');
    const refusedFile = join(dir, 'refused.csv');
    const refused = await run(['audit', 'export', '--format', 'csv', '--out', refusedFile], { token: await sessionFor(h, person.username) });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /FORBIDDEN/);
    assert.equal(existsSync(refusedFile), false, 'no export');
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('refused.csv')), [], 'nothing written, not even a partial file');
    assert.equal((await run(['audit', 'export', '--format', 'xml'])).code, 2);
  });

  test('an export never writes through a file planted beside --out, and replaces an existing file with a mode 600 one', async () => {
    const file = join(dir, 'planted.jsonl');
    const victim = join(dir, 'victim.txt');
    writeFileSync(victim, 'untouched');
    symlinkSync(victim, `${file}.partial`);
    writeFileSync(file, 'old export', { mode: 0o644 });
    const res = await run(['audit', 'export', '--out', file]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(readFileSync(victim, 'utf8'), 'untouched', 'the planted link was not followed');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.match(readFileSync(file, 'utf8'), /"action":"secret\.create"/);
  });

  test('usage lists first and last use or reveal per actor', async () => {
    const res = await run(['audit', 'usage', 'PAY_KEY']);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^ACTOR\s+FIRST\s+LAST\s+USES\s+REVEALS\nroot:test-root\s+\S+Z\s+\S+Z\s+0\s+1\n$/);
    assert.match((await run(['audit', 'usage', 'UNUSED'])).stdout, /No use or reveal of UNUSED is recorded/);
    assert.equal((await run(['audit', 'usage'])).code, 2);
  });

  test('a row inserted by hand with terminal escapes, a megabyte of text and a time no date can hold is printed inert, not obeyed', async () => {
    const head = (await h.storage.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq;
    const esc = '\u001b[2J\u001b]0;owned\u0007\r\n\u202e';
    await h.storage.db.insertInto('audit_events').values({
      seq: head + 1000, id: 'forged', time: 9e15, tenant_id: h.ctx.tenantId, actor_type: 'user', actor_id: `intruder${esc}`, action: `secret.use${esc}`,
      resource_type: 'secret', resource_id: null, resource_name: 'PAY_KEY', environment: `production${esc}`, secret_version: 1, outcome: 'allowed',
      reason: 'r'.repeat(1 << 20), context: '{}', prev_hash: '0'.repeat(64), hash: 'f'.repeat(64),
    }).execute();
    // And one use that usage counts, whose actor is the same hostile text.
    await h.storage.db.insertInto('audit_events').values({
      seq: head + 1001, id: 'forged-use', time: 9e15, tenant_id: h.ctx.tenantId, actor_type: 'user', actor_id: `intruder${esc}`, action: 'secret.use',
      resource_type: 'secret', resource_id: null, resource_name: 'PAY_KEY', environment: 'production', secret_version: 1, outcome: 'allowed',
      reason: null, context: '{}', prev_hash: '0'.repeat(64), hash: 'f'.repeat(64),
    }).execute();
    try {
      for (const argv of [['list', '--limit', '3'], ['tail'], ['usage', 'PAY_KEY']]) {
        const res = await run(['audit', ...argv]);
        assert.equal(res.code, 0, `${argv.join(' ')}: ${res.stderr}`);
        assert.doesNotMatch(res.stdout.replaceAll('\n', ''), /[\p{Cc}\u202e]/u, `${argv.join(' ')} printed a control character`);
        assert.match(res.stdout, /intruder\\u001b\[2J\\u001b\]0;owned\\u0007\\u000d\\u000a\\u202e/, argv.join(' '));
        assert.ok(res.stdout.length < 4096, `${argv.join(' ')} printed ${res.stdout.length} characters`);
      }
      assert.match((await run(['audit', 'tail'])).stdout, /^9000000000000000 {2}#\d+ {2}allowed {2}secret\.use\\u001b/m, 'the time as stored');
    } finally {
      await sql`drop trigger if exists audit_events_no_delete`.execute(h.storage.db);
      await sql`delete from audit_events where seq > ${head}`.execute(h.storage.db);
    }
  });

  // Last: it tampers with the log (as a database owner could, with the guard dropped).
  test('verify exits 0 on an intact chain and 1 naming the first bad event', async () => {
    const ok = await run(['audit', 'verify']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^Audit log intact: \d+ events through #\d+, 0 signed checkpoint\(s\) match\.\n$/);

    const { seq } = await h.storage.db.selectFrom('audit_events').select('seq').where('outcome', '=', 'denied').orderBy('seq').executeTakeFirstOrThrow();
    await sql`drop trigger if exists audit_events_no_update`.execute(h.storage.db);
    await sql`update audit_events set outcome = 'allowed' where seq = ${seq}`.execute(h.storage.db);
    // An edit in place leaves the head alone, so the last walk may answer until its bound has passed.
    h.clock.advance(VERIFY_MAX_AGE_MS);
    const broken = await run(['audit', 'verify']);
    assert.equal(broken.code, 1);
    assert.equal(broken.stdout, `Audit log BROKEN at event #${seq}: event ${seq} was altered (its hash does not match its content)\n`);
    const json = JSON.parse((await run(['audit', 'verify', '--json'])).stdout) as { ok: boolean; firstBadSeq: number };
    assert.deepEqual([json.ok, json.firstBadSeq], [false, seq]);
  });

  test('audit sinks shows each sink\'s cursor, lag and last failure, and says so when none is configured', async () => {
    assert.match((await run(['audit', 'sinks'])).stdout, /No audit sinks are configured on this node/);
    h.services.auditStreaming.delivery = {
      status: () => [{
        sink: 'syslog-tcp', state: 'backoff', cursor: 40, headSeq: 52, lag: 12, consecutiveFailures: 3,
        lastError: 'ECONNREFUSED', lastErrorAt: Date.UTC(2026, 5, 1, 12), lastDeliveredAt: Date.UTC(2026, 5, 1, 11), delivered: 40,
      }],
    };
    try {
      const shown = await run(['audit', 'sinks']);
      assert.equal(shown.code, 0, shown.stderr);
      assert.match(shown.stdout, /SINK\s+STATE\s+CURSOR\s+LAG\s+FAILURES/);
      assert.match(shown.stdout, /syslog-tcp\s+backoff\s+40\s+12\s+3\s+.*ECONNREFUSED/);
      const json = JSON.parse((await run(['audit', 'sinks', '--json'])).stdout) as { items: Array<{ lastErrorAt: string }> };
      assert.equal(json.items[0]!.lastErrorAt, '2026-06-01T12:00:00.000Z');
    } finally {
      h.services.auditStreaming.delivery = null;
    }
  });
});
