import autocannon, { type Result } from 'autocannon';
import { cpuSeconds } from './cpu.ts';

/** One setting for every HTTP measurement, so the bare baseline and Keyhold are loaded alike. */
export const LOAD = { connections: 32, warmupSeconds: 1, durationSeconds: 5 } as const;

export interface LoadResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  /** Server CPU (user + system) per request in the measured run, in microseconds; null without /proc. */
  serverCpuUs: number | null;
  /** The same for the server's main thread (the event loop) alone. */
  mainThreadCpuUs: number | null;
}

/**
 * Loads one GET endpoint with autocannon: a warm-up run, then the measured run. Requests per
 * second is autocannon's average of its per-second samples. Any non-2xx answer, socket error or
 * timeout (in the warm-up too) fails the run: a benchmark that measures errors measures the wrong thing.
 */
export async function loadGet(label: string, url: string, opts: { headers?: Record<string, string>; serverPid?: number; connections?: number } = {}): Promise<LoadResult> {
  const base = { url, method: 'GET', headers: opts.headers ?? {}, connections: opts.connections ?? LOAD.connections };
  assertClean(label, await autocannon({ ...base, duration: LOAD.warmupSeconds }), 'warm-up');
  const pid = opts.serverPid;
  const cpuBefore = pid === undefined ? null : cpuSeconds(pid);
  const mainBefore = pid === undefined ? null : cpuSeconds(pid, { mainThreadOnly: true });
  const result = await autocannon({ ...base, duration: LOAD.durationSeconds });
  const cpuAfter = pid === undefined ? null : cpuSeconds(pid);
  const mainAfter = pid === undefined ? null : cpuSeconds(pid, { mainThreadOnly: true });
  const perRequest = (before: number | null, after: number | null) => (before === null || after === null ? null : ((after - before) * 1e6) / result.requests.total);
  assertClean(label, result, 'measured run');
  return {
    rps: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    requests: result.requests.total,
    serverCpuUs: perRequest(cpuBefore, cpuAfter),
    mainThreadCpuUs: perRequest(mainBefore, mainAfter),
  };
}

function assertClean(label: string, r: Result, phase: string): void {
  const bad = r.non2xx + r.errors + r.timeouts;
  if (bad === 0 && r.requests.total > 0) return;
  const codes = Object.entries(r.statusCodeStats).map(([code, s]) => `${code}: ${s.count}`).join(', ');
  throw new Error(
    `${label} ${phase}: ${r.requests.total} requests, non-2xx ${r.non2xx}, errors ${r.errors}, timeouts ${r.timeouts}` +
    ` (status codes: ${codes || 'none'}); refusing to report a throughput that includes failures`,
  );
}
