import { readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ, 100 on every Linux the project runs on

/**
 * CPU seconds (user + system) a process has used so far, from /proc; null where there is no /proc.
 * CPU per request is steadier than throughput on a shared machine: other load steals time
 * from the server but barely changes what one request costs.
 */
export function cpuSeconds(pid: number, opts: { mainThreadOnly?: boolean } = {}): number | null {
  let stat: string;
  try {
    // The main thread's task id is the process id; the process line sums every thread.
    stat = readFileSync(opts.mainThreadOnly ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}
