import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID, createSecretKey } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { parseArgs } from 'node:util';
import { openStorage } from '../src/storage/database.ts';
import { createSqliteAuditWriter } from '../src/modules/audit/sqlite-audit-writer.ts';
import { encodeBatch } from '../src/modules/audit/sqlite-appender.ts';
import type { AuditInput } from '../src/modules/audit/audit-log.ts';
import type { EventRow } from '../src/modules/audit/sqlite-appender-protocol.ts';

/**
 * `node bench/audit-writer.ts [--batch 14] [--rounds 1500]`: the SQLite audit appender's own work,
 * in process and single-threaded, on a migrated database: rounds of `--batch` read events (what the
 * worker sees under the read bench: ~14 per round) decoded, appended in one transaction, and synced,
 * with a checkpoint every 100 rounds as the worker does. Prints wall time per event for decoding and
 * appending, per round for the sync, and process CPU per event in all. Not part of `npm run bench`.
 */
const { values: flags } = parseArgs({ options: { batch: { type: 'string' }, rounds: { type: 'string' } }, strict: true });
const BATCH = Number(flags.batch ?? 14);
const ROUNDS = Number(flags.rounds ?? 1500);
const dir = mkdtempSync(join(tmpdir(), 'keyhold-audit-writer-'));
try {
  const path = join(dir, 'keyhold.db');
  await (await openStorage({ url: `sqlite:${path}` })).close();
  const writer = createSqliteAuditWriter(new DatabaseSync(path, { timeout: 5000 }), path);
  const [tenant, machine, secret, token] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
  const event = (): AuditInput => ({
    tenantId: tenant, actor: { type: 'machine', id: machine }, action: 'secret.use', resource: { type: 'secret', id: secret, name: 'BENCH_KEY' },
    environment: 'production', secretVersion: 1, outcome: 'allowed', context: { requestId: randomUUID(), sourceIp: '127.0.0.1', credentialId: token },
  });
  // Events are written under an event MAC key, as an unsealed server writes them.
  const macKey = createSecretKey(randomBytes(32));
  const inputs = Array.from({ length: 64 }, () => Array.from({ length: BATCH }, event));
  const run = (rounds: number) => {
    let decode = 0n;
    let append = 0n;
    let sync = 0n;
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < rounds; i++) {
      // Time moves on as it does in the server: ids and the (tenant, time) index stay append-only.
      const encoded = encodeBatch(Date.now() + i, inputs[i % inputs.length]!);
      const t0 = process.hrtime.bigint();
      const batch = JSON.parse(encoded) as [number, EventRow[]];
      const t1 = process.hrtime.bigint();
      writer.append([[...batch, macKey]]);
      const t2 = process.hrtime.bigint();
      writer.sync();
      sync += process.hrtime.bigint() - t2;
      decode += t1 - t0;
      append += t2 - t1;
      if (i % 100 === 99) writer.checkpoint();
    }
    const cpu = process.cpuUsage(cpu0);
    const events = rounds * BATCH;
    return `decode ${(Number(decode) / 1e3 / events).toFixed(2)} us/event, append ${(Number(append) / 1e3 / events).toFixed(2)} us/event, `
      + `sync ${(Number(sync) / 1e3 / rounds).toFixed(0)} us/round, process CPU ${((cpu.user + cpu.system) / events).toFixed(2)} us/event (sync and checkpoints included)`;
  };
  run(Math.min(300, ROUNDS));
  console.log(`batch ${BATCH}, ${ROUNDS} rounds: ${run(ROUNDS)}`);
  writer.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
