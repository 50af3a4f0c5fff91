import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { dropAuditGuards } from '../../../test/helpers/audit-tampering.ts';
import { runCli } from '../../../test/helpers/cli.ts';
import { createAuditDelivery, type AuditDelivery } from './delivery.ts';
import { createMemoryCursorStore } from './delivery-ports.ts';
import type { AuditSink } from './event.ts';
import { createJsonlSink } from './sinks/jsonl/index.ts';
import { createSyslogSink } from './sinks/syslog/index.ts';
import { createWebhookSink } from './sinks/webhook/index.ts';
import { VERIFY_MAX_AGE_MS } from './verify-gate.ts';

/**
 * Whoever holds the server's database login can INSERT into audit_events (updates and deletes are
 * refused). Each shape below is such a row; every read of the trail must stay up and show it, and
 * verify must name it. SQLite keeps any value in any column (text in a bigint, a blob in a text
 * column); PostgreSQL refuses those, so those shapes are SQLite's only.
 */
const ESC = '\u001b[2J\u001b[H\u001b]0;owned\u0007\r\n\u202e';
const HUGE = 'h'.repeat(1 << 20);
const FORGED = 'FORGED';

interface Shape {
  name: string;
  row: Record<string, unknown>;
  sqliteOnly?: boolean;
  /** Where the rows go: past the head (default), before the first event, or at a seq no JS number holds exactly. */
  at?: 'past' | 'before' | 'huge';
}

const SHAPES: Shape[] = [
  { name: 'a time past what a date can hold', row: { time: 9e15 } },
  { name: 'a time before what a date can hold', row: { time: -9e15 } },
  { name: 'the largest bigint as time', row: { time: sql`9223372036854775807` } },
  { name: 'a negative time', row: { time: -1 } },
  { name: 'a time that is text', row: { time: 'NaN' }, sqliteOnly: true },
  { name: 'an infinite time', row: { time: Infinity }, sqliteOnly: true },
  { name: 'a fractional time', row: { time: 1.5 }, sqliteOnly: true },
  { name: 'an unknown outcome and actor type', row: { outcome: 'pwned', actor_type: 'god' } },
  { name: 'null wherever the column allows it', row: { resource_id: null, resource_name: null, environment: null, secret_version: null, reason: null, outcome: 'denied' } },
  { name: 'a context that is not JSON', row: { context: 'not json {' } },
  { name: 'a context that is JSON null', row: { context: 'null' } },
  { name: 'a context that is an array', row: { context: '[1,"a"]' } },
  { name: 'a context whose values are not strings', row: { context: '{"a":{"b":1},"c":5,"d":null,"e":[1]}' } },
  { name: 'huge strings', row: { actor_id: HUGE, reason: HUGE, environment: HUGE, context: JSON.stringify({ userAgent: HUGE }) } },
  {
    name: 'control characters and terminal escapes in every text field',
    row: Object.fromEntries(['id', 'actor_type', 'actor_id', 'action', 'resource_type', 'resource_id', 'resource_name', 'environment', 'outcome', 'reason', 'prev_hash', 'hash']
      .map((c) => [c, `${c}${ESC}`]).concat([['context', JSON.stringify({ userAgent: ESC, [ESC]: 'k' })]])),
  },
  { name: 'blobs in text columns', row: { actor_id: Buffer.from(ESC), outcome: Buffer.from('allowed'), resource_name: Buffer.from(FORGED), context: Buffer.from('{}') }, sqliteOnly: true },
  { name: 'a version that is text', row: { secret_version: 'v2' }, sqliteOnly: true },
  { name: 'a version past what a JS number holds', row: { secret_version: sql`9223372036854775807` }, sqliteOnly: true },
  { name: 'a negative version', row: { secret_version: -2147483648 } },
  { name: 'a forged checkpoint event', row: { action: 'audit.checkpoint', context: JSON.stringify({ seq: 'x', hash: ESC, prevSeq: '-1', signature: '', publicKey: '' }) } },
  { name: 'rows before the first event', row: {}, at: 'before' },
  { name: 'a seq past what a JS number holds exactly', row: {}, at: 'huge' },
];

/** Printable text and newlines only: nothing a terminal would act on. */
const TERMINAL_SAFE = /^[^\p{Cc}\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]*$/u;
const assertTerminalSafe = (text: string, what: string) => assert.match(text.replaceAll('\n', ''), TERMINAL_SAFE, `${what} printed a control character`);

describeEachDialect('a hand-written audit row of any shape: every read stays up and shows it, verify names it', (dialect) => {
  let h: Harness;
  let dir: string;
  let delivery: AuditDelivery;
  let sinks: AuditSink[];
  const datagrams: string[] = [];
  const udp = createSocket('udp4');
  const posted: unknown[] = [];
  const collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posted.push(...(JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown[]));
      res.writeHead(204).end();
    });
  });
  const auth = () => ({ authorization: `Bearer ${h.rootToken}` });
  const get = (url: string) => h.app.inject({ method: 'GET', url, headers: auth() });
  const cli = (...argv: string[]) => runCli(h.app, argv, { token: h.rootToken });
  const newSinks = (tag: string): AuditSink[] => [
    createJsonlSink({ name: `file-${tag}`, path: join(dir, `${tag}.jsonl`) }),
    createSyslogSink({ name: `syslog-${tag}`, transport: 'udp', host: '127.0.0.1', port: udp.address().port }),
    createWebhookSink({ name: `webhook-${tag}`, url: `http://127.0.0.1:${(collector.address() as AddressInfo).port}/audit` }),
  ];

  before(async () => {
    h = await createHarness(dialect);
    dir = mkdtempSync(join(tmpdir(), 'keyhold-forged-'));
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
    udp.on('message', (m) => datagrams.push(m.toString('utf8')));
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    await h.services.secrets.create(h.ctx, { name: FORGED, owner: 'ops' });
    await h.services.values.write(h.ctx, FORGED, 'production', { value: 'forged-canary' });
    await h.services.values.read(h.ctx, FORGED, 'production');
    // Only to take the forgeries out again between cases (and before the harness proves every event is its own).
    await dropAuditGuards(h.storage.db, dialect);
    sinks = newSinks('stream');
    delivery = createAuditDelivery({
      source: h.services.audit, sinks, cursors: createMemoryCursorStore(), clock: h.clock,
      timeoutMs: 5000, batchSize: 50, backoff: { baseMs: 5, maxMs: 20, random: () => 0 }, pollMs: 20,
    });
    delivery.start();
  });
  afterEach(async () => {
    await sql`delete from audit_events where seq < 1 or seq > (select seq from audit_head)`.execute(h.storage.db);
  });
  after(async () => {
    await delivery.stop();
    udp.close();
    collector.closeAllConnections();
    collector.close();
    rmSync(dir, { recursive: true, force: true });
    await h.close();
  });

  /** Inserts the shape as three rows (an allowed use, then two identical denials to collapse); returns their seqs. */
  async function forge(shape: Shape): Promise<number[]> {
    const head = (await h.storage.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq;
    const seqs = shape.at === 'before' ? [-2, -1, 0] : shape.at === 'huge' ? [2 ** 62, 2 ** 62 + 1024, 2 ** 62 + 2048] : [head + 1000, head + 1001, head + 1002];
    const base = {
      time: h.clock.now(), tenant_id: h.ctx.tenantId, actor_type: 'user', actor_id: 'intruder', resource_type: 'secret', resource_id: null,
      resource_name: FORGED, environment: 'production', secret_version: 1, reason: null, context: '{}', prev_hash: '0'.repeat(64), hash: 'f'.repeat(64),
    };
    const kinds = [{ action: 'secret.use', outcome: 'allowed' }, { action: 'authz.use', outcome: 'denied' }, { action: 'authz.use', outcome: 'denied' }];
    for (const [i, seq] of seqs.entries()) {
      await h.storage.db.insertInto('audit_events')
        .values({ ...base, ...kinds[i], id: `forged-${i}`, ...shape.row, seq: sql`${sql.raw(String(BigInt(seq)))}` } as never).execute();
    }
    return seqs;
  }

  for (const shape of SHAPES) {
    test(shape.name, { skip: shape.sqliteOnly && dialect !== 'sqlite' ? 'PostgreSQL refuses this value for the column' : false }, async () => {
      const seqs = await forge(shape);
      const first = seqs[0]!;
      // Tail's after is a safe integer: read forward from just before a row past the head, else from the start.
      const tailAfter = String(shape.at === undefined ? first - 1 : 0);

      // Verify names the first forged row (a walk younger than VERIFY_MAX_AGE_MS may answer otherwise).
      h.clock.advance(VERIFY_MAX_AGE_MS + 1);
      const verified = await get('/v1/audit/verify');
      assert.equal(verified.statusCode, 200, verified.body);
      assert.deepEqual([verified.json().ok, verified.json().firstBadSeq], [false, first], verified.body);

      // HTTP: list (both orders: collapse runs in each), tail, both exports, usage.
      const shown = new Set<number>();
      for (const url of ['/v1/audit/events?allTenants=true&limit=5', '/v1/audit/events?allTenants=true&limit=5&order=asc', '/v1/audit/tail?allTenants=true',
        `/v1/audit/tail?allTenants=true&after=${tailAfter}`]) {
        const res = await get(url);
        assert.equal(res.statusCode, 200, `${url}: ${res.body.slice(0, 300)}`);
        for (const e of res.json().items as Array<{ seq: number }>) shown.add(e.seq);
      }
      assert.ok(shown.has(first), 'the forged row is listed');
      for (const format of ['json', 'csv']) {
        const res = await get(`/v1/audit/export?allTenants=true&format=${format}`);
        assert.equal(res.statusCode, 200, res.body.slice(0, 300));
        assert.ok(res.body.includes(format === 'json' ? `{"seq":${first},` : `\r\n${first},`), `the ${format} export holds the forged row`);
      }
      const usage = await get(`/v1/audit/usage?secret=${FORGED}`);
      assert.equal(usage.statusCode, 200, usage.body.slice(0, 300));

      // The CLI's human output: up, and nothing in it a terminal would act on.
      for (const argv of [['list', '--all-tenants', '--limit', '5'], ['list', '--all-tenants', '--limit', '5', '--oldest-first'], ['tail', '--all-tenants'],
        ['tail', '--all-tenants', '--after', tailAfter], ['usage', FORGED], ['verify']]) {
        const res = await cli('audit', ...argv);
        assert.equal(res.code, argv[0] === 'verify' ? 1 : 0, `audit ${argv.join(' ')}: ${res.stderr}`);
        assertTerminalSafe(res.stdout + res.stderr, `audit ${argv.join(' ')}`);
        assert.ok(res.stdout.length < 64 * 1024, `audit ${argv.join(' ')} printed ${res.stdout.length} characters`);
      }
      assert.match((await cli('audit', 'verify')).stdout, new RegExp(`BROKEN at event #${first}\\b`));

      // Each sink takes the forged rows as the log reads them.
      const forged = await h.services.audit.readAfter(shape.at === 'huge' ? first - 2048 : first - 1, 3); // 2^62 - 1 is no JS number
      assert.deepEqual(forged.map((e) => e.seq), seqs);
      // A bound so a sink that hangs fails the test rather than holding it; not a speed check (SQLite reads of
      // these 1 MiB rows block the event loop while the stream catches up beside it).
      const signal = AbortSignal.timeout(30_000);
      for (const sink of newSinks(`direct-${SHAPES.indexOf(shape)}`)) {
        await sink.deliver(forged, signal);
        await sink.close?.();
      }

      // The stream goes on: every event the server writes next reaches every sink, none skipped.
      await h.services.values.read(h.ctx, FORGED, 'production');
      const head = (await h.storage.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq;
      delivery.poke(head);
      for (const until = Date.now() + 10_000; delivery.status().some((s) => s.cursor < head);) {
        assert.ok(Date.now() < until, `sinks stuck: ${JSON.stringify(delivery.status())}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.deepEqual(delivery.status().map((s) => s.consecutiveFailures), [0, 0, 0], JSON.stringify(delivery.status()));
      const file = readFileSync(join(dir, 'stream.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq);
      assert.deepEqual(file, Array.from({ length: head }, (_, i) => i + 1), 'the file holds the log, one line per event');

      // The checkpointer signs the head (the forged rows are past it or before the first event).
      await h.services.checkpoints.checkpoint();
    });
  }
});
