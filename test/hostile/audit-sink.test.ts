import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { createHarness, type Harness } from '../helpers/harness.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { systemClock } from '../../src/platform/clock.ts';
import { sinksFrom, startAuditStreaming } from '../../src/modules/audit/streaming.ts';
import { auditSettings } from '../../src/config/config.ts';

describeEachDialect('a hung or failing audit sink never slows requests and catches up when it returns', (dialect) => {
  let h: Harness;
  let mode: 'hang' | 'fail' | 'ok' = 'hang';
  const received: number[] = [];
  const hanging: ServerResponse[] = [];
  const sink = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (mode === 'hang') return void hanging.push(res);
      if (mode === 'fail') return void res.writeHead(500).end();
      for (const e of JSON.parse(Buffer.concat(chunks).toString('utf8')) as Array<{ seq: number }>) received.push(e.seq);
      res.writeHead(204).end();
    });
  });

  before(async () => {
    h = await createHarness(dialect);
    await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
    await h.services.secrets.create(h.ctx, { name: 'STREAMED', owner: 'ops' });
    await h.services.values.write(h.ctx, 'STREAMED', 'production', { value: 'v' });
  });
  after(async () => {
    for (const res of hanging) res.destroy();
    sink.closeAllConnections();
    sink.close();
    await h.close();
  });

  const reads = async (n: number) => {
    const start = performance.now();
    for (let i = 0; i < n; i++) await h.services.values.read(h.ctx, 'STREAMED', 'production');
    return performance.now() - start;
  };

  test('reads take about as long with a sink that hangs forever, then one that answers 500, and every event arrives once it is healthy', async () => {
    await reads(50); // warm up
    const baseline = await reads(200);
    const url = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/audit`;
    const delivery = startAuditStreaming({
      db: h.storage.db, log: h.services.audit, clock: systemClock, logger: createLogger({ level: 'silent' }),
      sinks: sinksFrom({ ...auditSettings(), webhook: { url, secret: null } }),
    })!;
    try {
      const withHung = await reads(200);
      mode = 'fail';
      const withFailing = await reads(200);
      // A generous bound: the point is that requests never wait on the sink (they would take seconds, or for ever).
      // Wall-clock times on a machine shared with other test processes and PostgreSQL: 3x and 200 ms were within its noise.
      const bound = baseline * 4 + 1_000;
      assert.ok(withHung < bound, `reads with a hung sink took ${withHung.toFixed(0)} ms vs ${baseline.toFixed(0)} ms`);
      assert.ok(withFailing < bound, `reads with a failing sink took ${withFailing.toFixed(0)} ms vs ${baseline.toFixed(0)} ms`);

      // The operator sees the sink behind and failing (root only), without the sink's address in the error.
      h.services.auditStreaming.delivery = delivery;
      const sinks = async (token = h.rootToken) => h.app.inject({ method: 'GET', url: '/v1/audit/sinks', headers: { authorization: `Bearer ${token}` } });
      let failing = (await sinks()).json().items[0];
      for (const until = Date.now() + 10_000; failing.consecutiveFailures === 0 && Date.now() < until;) {
        await new Promise((r) => setTimeout(r, 50));
        failing = (await sinks()).json().items[0];
      }
      assert.equal(failing.sink, 'webhook');
      assert.ok(failing.lag > 0 && failing.consecutiveFailures > 0 && failing.lastError && failing.lastErrorAt, JSON.stringify(failing));
      assert.ok(!failing.lastError.includes(url), 'the status does not name where the sink is');
      const machine = await h.services.machines.create(h.ctx, { name: 'not-root', kind: 'client_secret' });
      await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: machine.id, role: 'tenant-admin' });
      const token = (await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: machine.id, name: 'not-root' })).token;
      assert.equal((await sinks(token)).statusCode, 403, "a tenant's admin does not see the sinks: they carry every tenant's events");

      mode = 'ok';
      for (const res of hanging.splice(0)) res.destroy();
      const head = (await h.storage.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq;
      const deadline = Date.now() + 20_000;
      while (new Set(received).size < head && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.equal(new Set(received).size, head, 'every event up to the head was delivered');
      assert.deepEqual([...new Set(received)].sort((a, b) => a - b), Array.from({ length: head }, (_, i) => i + 1));
      // The sink has every event; the status follows once the delivery loop has read the sink's answer to the last
      // batch, which can come after the sink counted it (seen: cursor 600 of 659 with every event received).
      let caughtUp = (await sinks()).json().items[0];
      for (const until = Date.now() + 10_000; caughtUp.cursor < head && Date.now() < until;) {
        await new Promise((r) => setTimeout(r, 50));
        caughtUp = (await sinks()).json().items[0];
      }
      assert.ok(caughtUp.cursor >= head && caughtUp.delivered >= head && caughtUp.lastDeliveredAt, JSON.stringify(caughtUp));
    } finally {
      await delivery.stop();
    }
  });
});
