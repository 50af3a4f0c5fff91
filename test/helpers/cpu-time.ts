/**
 * The CPU time (user + system, in ms) this process spent running `fn`. Bounds on the cost of
 * synchronous work use it rather than the wall clock: on a CI machine shared with other test
 * processes and PostgreSQL, the wall clock also counts the time others held the CPU.
 */
export function cpuMs<T>(fn: () => T): { result: T; ms: number } {
  const started = process.cpuUsage();
  const result = fn();
  const used = process.cpuUsage(started);
  return { result, ms: (used.user + used.system) / 1000 };
}
