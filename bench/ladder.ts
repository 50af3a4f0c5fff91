import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createCleanup, cleanupOnSignals } from './lib/cleanup.ts';
import { loadGet } from './lib/load.ts';
import { spawnServer } from './lib/spawn.ts';

/**
 * `node bench/ladder.ts [--rounds 2]`: where the secret read's distance from the bare server goes.
 * Loads the bare server and then each rung of bench/servers/ladder.ts, each adding one part of the
 * read to the rung before (Keyhold's app, schemas, authentication, one durable audit event, the
 * real read), alternating for `--rounds` rounds under the bench's load, and prints per rung the
 * median requests per second, its ratio to the bare server of the same round and the server's
 * main-thread CPU per request. Not part of `npm run bench`.
 */
const { values: flags } = parseArgs({ options: { rounds: { type: 'string' } }, strict: true });
const rounds = Number(flags.rounds ?? 2);
const RUNGS: Array<[string, string]> = [
  ['app route, no schema, no auth', '/ladder/plain/BENCH_KEY/values/production'],
  ['+ schemas', '/ladder/schema/BENCH_KEY/values/production'],
  ['+ tenant authentication', '/ladder/auth/BENCH_KEY/values/production'],
  ['+ one durable audit event', '/ladder/audit/BENCH_KEY/values/production'],
  ['the real read (+ authz, row, decrypt)', '/v1/secrets/BENCH_KEY/values/production'],
];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const cleanup = createCleanup();
cleanupOnSignals(cleanup);
try {
  const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-ladder-'));
  cleanup.add(`remove ${dataDir}`, () => rmSync(dataDir, { recursive: true, force: true }));
  const bare = await spawnServer({ label: 'bare server', script: 'bench/servers/bare.ts', env: process.env, readyMsg: 'bare listening', cleanup });
  const ladder = await spawnServer({ label: 'ladder server', script: 'bench/servers/ladder.ts', args: [dataDir], env: process.env, readyMsg: 'ladder listening', cleanup });
  const headers = { authorization: `Bearer ${readFileSync(join(dataDir, 'machine-token'), 'utf8')}` };
  const results = RUNGS.map(() => ({ ratio: [] as number[], rps: [] as number[], main: [] as number[] }));
  const bareRps: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    const b = await loadGet('bare', `${bare.address}/bare`, { serverPid: bare.pid });
    bareRps.push(b.rps);
    for (const [i, [name, path]] of RUNGS.entries()) {
      const r = await loadGet(name, ladder.address + path, { headers, serverPid: ladder.pid });
      results[i]!.rps.push(r.rps);
      results[i]!.ratio.push(r.rps / b.rps);
      results[i]!.main.push(r.mainThreadCpuUs ?? NaN);
    }
    console.log(`# round ${round} of ${rounds} done`);
  }
  console.log(`${'bare server'.padEnd(40)} ${Math.round(median(bareRps)).toString().padStart(6)} req/s`);
  for (const [i, [name]] of RUNGS.entries()) {
    const r = results[i]!;
    console.log(`${name.padEnd(40)} ${Math.round(median(r.rps)).toString().padStart(6)} req/s  ratio ${median(r.ratio).toFixed(2)}  main thread ${median(r.main).toFixed(0)} us/req`);
  }
} finally {
  await cleanup.run();
}
