import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { createCleanup, cleanupOnSignals } from './lib/cleanup.ts';
import { cpuSeconds } from './lib/cpu.ts';
import { startKeyhold } from './lib/keyhold.ts';
import { LOAD } from './lib/load.ts';

/**
 * `node bench/profile.ts [--seconds 8] [--top 40]`: the bench's secret read under the bench's load,
 * with the server under `--cpu-prof`; prints where the server's busy time went (self time per
 * function and per area, and inclusive time of the read path's stages). Not part of `npm run bench`:
 * the profiler slows the server, so its numbers are shares, not speeds.
 */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[]; startTime: number }

const { values: flags } = parseArgs({ options: { seconds: { type: 'string' }, top: { type: 'string' }, db: { type: 'string' } }, strict: true });
const seconds = Number(flags.seconds ?? 8);
const top = Number(flags.top ?? 40);

/** The read path's stages, found by the function names on each sample's stack (inclusive time). */
const STAGES: Array<[string, RegExp]> = [
  ['auth hook (token, tenant, context)', /^(registerAuth|authenticate|hashToken)\b/],
  ['values.read (total)', /^read$/],
  ['authz.require', /^(require|buildRequest|decide|rolesFor|grantsOf)$/],
  ['keyring.openValue', /^(openValue|aeadOpen|dekFor)$/],
  ['audit flush (group commit)', /^(flush|appendInTx)$/],
  ['chainHash', /^chainHash$/],
  ['serialization', /^(serialize|anonymous)$/],
];

function area(url: string, name: string): string {
  if (url === '') return name.startsWith('(') ? name : 'native';
  const m = /\/src\/(.+?)\.ts/.exec(url) ?? /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!;
  if (url.startsWith('node:')) return url.replace(/^node:internal\/(deps\/)?/, 'node:').split('/').slice(0, 2).join('/');
  return url;
}

/** Samples inside [from, to] (µs, CLOCK_MONOTONIC: V8's profiler clock and process.hrtime agree on Linux). */
function summarise(p: Profile, requests: number, from: number, to: number): void {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    if (t < from || t > to) continue;
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  let total = 0;
  let idle = 0;
  const fnSelf = new Map<string, number>();
  const areaSelf = new Map<string, number>();
  const stage = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    const name = n.callFrame.functionName || '(anonymous)';
    total += us;
    if (name === '(idle)') { idle += us; continue; }
    const key = `${name} ${area(n.callFrame.url, name)}:${n.callFrame.lineNumber + 1}`;
    fnSelf.set(key, (fnSelf.get(key) ?? 0) + us);
    const a = area(n.callFrame.url, name);
    areaSelf.set(a, (areaSelf.get(a) ?? 0) + us);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const fn = byId.get(cur)!.callFrame.functionName;
      for (const [label, re] of STAGES) if (!seen.has(label) && re.test(fn)) seen.add(label);
    }
    for (const label of seen) stage.set(label, (stage.get(label) ?? 0) + us);
  }
  const busy = total - idle;
  const line = (us: number, what: string) => `${(us / requests).toFixed(1).padStart(7)} us/req ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${what}`;
  console.log(`# profile: ${requests} requests, busy ${(busy / 1e6).toFixed(2)} s, idle ${(idle / 1e6).toFixed(2)} s, ${(busy / requests).toFixed(1)} us busy per request (profiler on)`);
  console.log('## stages (inclusive, synchronous stacks only)');
  for (const [label] of STAGES) console.log(line(stage.get(label) ?? 0, label));
  console.log('## areas (self)');
  for (const [a, us] of [...areaSelf].sort((x, y) => y[1] - x[1]).slice(0, 30)) console.log(line(us, a));
  console.log('## functions (self)');
  for (const [f, us] of [...fnSelf].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(line(us, f));
}

/** CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile */
const threadOf = (file: string) => Number(file.split('.')[4] ?? 0);

const cleanup = createCleanup();
cleanupOnSignals(cleanup);
try {
  const dir = mkdtempSync(join(tmpdir(), 'keyhold-prof-'));
  cleanup.add(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  const target = await startKeyhold({
    label: 'keyhold server (profiled)', cleanup, nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=200'],
    ...(flags.db ? { databaseUrl: flags.db } : {}),
  });
  const base = { url: target.url, method: 'GET', headers: target.headers, connections: LOAD.connections };
  await autocannon({ ...base, duration: 1 });
  const cpu0 = cpuSeconds(target.serverPid);
  const from = Number(process.hrtime.bigint() / 1000n);
  const r = await autocannon({ ...base, duration: seconds });
  const to = Number(process.hrtime.bigint() / 1000n);
  const cpu1 = cpuSeconds(target.serverPid);
  console.log(`# ${Math.round(r.requests.average)} req/s, ${r.non2xx} non-2xx, server CPU ${cpu0 === null || cpu1 === null ? '?' : (((cpu1 - cpu0) * 1e6) / r.requests.total).toFixed(0)} us/req (profiler on)`);
  await target.stop();
  // One profile per thread: the main thread's first (lowest thread id), then any worker's.
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort((a, b) => threadOf(a) - threadOf(b));
  if (files.length === 0) throw new Error('no profile written');
  for (const file of files) {
    console.log(`# thread ${threadOf(file)}${threadOf(file) === 0 ? ' (main)' : ' (worker)'}`);
    summarise(JSON.parse(readFileSync(join(dir, file), 'utf8')) as Profile, r.requests.total, from, to);
  }
} finally {
  await cleanup.run();
}
