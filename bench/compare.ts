import { createCleanup, cleanupOnSignals } from './lib/cleanup.ts';
import { startKeyhold } from './lib/keyhold.ts';
import { loadGet } from './lib/load.ts';
import { spawnServer } from './lib/spawn.ts';

/**
 * `node bench/compare.ts [rounds]`: only the bare GET and the SQLite secret read of `npm run bench`,
 * alternating for more rounds (default 3), for judging one change to the read path quickly.
 */
const rounds = Number(process.argv[2] ?? 3);
const cleanup = createCleanup();
cleanupOnSignals(cleanup);
try {
  const bare = await spawnServer({ label: 'bare server', script: 'bench/servers/bare.ts', env: process.env, readyMsg: 'bare listening', cleanup });
  const read = await startKeyhold({ label: 'keyhold server (sqlite)', cleanup });
  let bestBare = 0;
  let bestRead = 0;
  for (let round = 1; round <= rounds; round++) {
    const b = await loadGet('bare', `${bare.address}/bare`, { serverPid: bare.pid });
    const r = await loadGet('read', read.url, { headers: read.headers, serverPid: read.serverPid });
    bestBare = Math.max(bestBare, b.rps);
    bestRead = Math.max(bestRead, r.rps);
    console.log(`round ${round}: bare ${Math.round(b.rps)} req/s ${b.serverCpuUs?.toFixed(0)} us/req | read ${Math.round(r.rps)} req/s ${r.serverCpuUs?.toFixed(0)} us/req (main thread ${r.mainThreadCpuUs?.toFixed(0)}) p99 ${r.p99Ms} ms | ratio ${(r.rps / b.rps).toFixed(2)}`);
  }
  console.log(`best: ratio ${(bestRead / bestBare).toFixed(2)}`);
} finally {
  await cleanup.run();
}
