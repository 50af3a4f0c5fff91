import { parseArgs } from 'node:util';
import { createCleanup, cleanupOnSignals } from './lib/cleanup.ts';
import { startKeyhold } from './lib/keyhold.ts';
import { loadGet, type LoadResult } from './lib/load.ts';
import { spawnServer } from './lib/spawn.ts';

/**
 * `node bench/compare.ts [--rounds 3] [--against DIR ...]`: only the bare GET and the SQLite secret
 * read of `npm run bench`, alternating for more rounds, for judging one change to the read path
 * quickly. Each `--against` adds the read of another checkout (e.g. a `git worktree` of the commit
 * before; it needs its own `node_modules`, a symlink to this one's will do), loaded in the same
 * rounds, right after this checkout's: medians over rounds are then comparable, where numbers
 * from separate runs on a shared machine are not. `--connections N` loads both with N connections
 * instead of the bench's 32 (how the ratio depends on concurrency; `npm run bench` keeps 32).
 */
const { values: flags } = parseArgs({ options: { rounds: { type: 'string' }, against: { type: 'string', multiple: true }, connections: { type: 'string' } }, strict: true });
const rounds = Number(flags.rounds ?? 3);
const connections = flags.connections === undefined ? undefined : Number(flags.connections);
const cleanup = createCleanup();
cleanupOnSignals(cleanup);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const line = (r: LoadResult) => `${Math.round(r.rps)} req/s ${r.serverCpuUs?.toFixed(0)} us/req (main thread ${r.mainThreadCpuUs?.toFixed(0)}) p99 ${r.p99Ms} ms`;
try {
  const bare = await spawnServer({ label: 'bare server', script: 'bench/servers/bare.ts', env: process.env, readyMsg: 'bare listening', cleanup });
  const checkouts = ['.', ...(flags.against ?? [])];
  const reads = [];
  for (const dir of checkouts) {
    reads.push(await startKeyhold({ label: `keyhold server (sqlite, ${dir})`, cleanup, ...(dir === '.' ? {} : { root: dir }) }));
  }
  const ratios = checkouts.map(() => [] as number[]);
  const mains = checkouts.map(() => [] as number[]);
  for (let round = 1; round <= rounds; round++) {
    const b = await loadGet('bare', `${bare.address}/bare`, { serverPid: bare.pid, ...(connections ? { connections } : {}) });
    const parts = [`round ${round}: bare ${line(b)}`];
    for (const [i, read] of reads.entries()) {
      const r = await loadGet(`read ${checkouts[i]}`, read.url, { headers: read.headers, serverPid: read.serverPid, ...(connections ? { connections } : {}) });
      ratios[i]!.push(r.rps / b.rps);
      mains[i]!.push(r.mainThreadCpuUs ?? NaN);
      parts.push(`read ${checkouts[i]}: ${line(r)}, ratio ${(r.rps / b.rps).toFixed(2)}`);
    }
    console.log(parts.join('\n  '));
  }
  for (const [i, dir] of checkouts.entries()) {
    console.log(`${dir}: median ratio ${median(ratios[i]!).toFixed(3)}, median main thread ${median(mains[i]!).toFixed(1)} us/read`);
  }
} finally {
  await cleanup.run();
}
