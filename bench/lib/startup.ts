import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.ts';
import { startKeyhold } from './keyhold.ts';
import { NODE_BIN, REPO_ROOT, spawnServer } from './spawn.ts';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Wall time of one process run to its exit, in ms. */
function timed(command: string, args: string[]): number {
  const t = performance.now();
  const run = spawnSync(command, args, { cwd: REPO_ROOT, stdio: 'ignore', env: { ...process.env, KEYHOLD_ADDR: 'http://127.0.0.1:1' } });
  if (run.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${run.status}`);
  return performance.now() - t;
}

/**
 * What a `keyhold` command and a server start cost in wall time, each beside its baseline in the
 * same run: the CLI against `node -e 0` (the pinned Node starting and exiting), a fresh dev-mode
 * server (SQLite created, migrated, initialised, unsealed, listening, one value written and read
 * back) against the bench's bare fastify server to listening. Runs alternate; medians are reported.
 */
export async function benchStartup(opts: { runs: number; cleanup: Cleanup }): Promise<{ cliMs: number; nodeMs: number; serverMs: number; bareServerMs: number }> {
  const cli: number[] = [];
  const node: number[] = [];
  for (let i = 0; i < opts.runs; i++) {
    node.push(timed(NODE_BIN, ['-e', '0']));
    cli.push(timed(join(REPO_ROOT, 'bin', 'keyhold'), ['--help']));
  }
  const server: number[] = [];
  const bare: number[] = [];
  for (let i = 0; i < Math.max(3, Math.ceil(opts.runs / 2)); i++) {
    let t = performance.now();
    const b = await spawnServer({ label: 'bare server (start-up)', script: 'bench/servers/bare.ts', env: process.env, readyMsg: 'bare listening', cleanup: opts.cleanup });
    bare.push(performance.now() - t);
    await b.stop();
    t = performance.now();
    const k = await startKeyhold({ label: 'keyhold server (start-up)', cleanup: opts.cleanup });
    server.push(performance.now() - t);
    await k.stop();
  }
  return { cliMs: median(cli), nodeMs: median(node), serverMs: median(server), bareServerMs: median(bare) };
}
