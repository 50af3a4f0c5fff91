import { positionals } from '../args.ts';
import type { Command } from '../command.ts';
import { table, time } from '../output.ts';

interface SinkStatus {
  sink: string; state: string; cursor: number; headSeq: number; lag: number; consecutiveFailures: number;
  lastError: string | null; lastErrorAt: string | null; lastDeliveredAt: string | null; delivered: number;
}

/** `audit sinks`: how far behind each streaming sink is on the node answering, and why (root token). */
export const sinksCommand: Command = {
  name: 'sinks',
  summary: "The streaming sinks' delivery on this node: cursor, lag, failures (root token)",
  usage: 'audit sinks',
  help: ['LAG is how many events exist that the sink has not acknowledged; a sink that is down keeps them and catches up.'],
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], sinksCommand.usage);
    const res = await api.call<{ items: SinkStatus[] }>('GET', '/v1/audit/sinks');
    out.result(res, () => (res.items.length === 0
      ? 'No audit sinks are configured on this node (KEYHOLD_AUDIT_FILE, KEYHOLD_AUDIT_SYSLOG, KEYHOLD_AUDIT_WEBHOOK).'
      : table(['SINK', 'STATE', 'CURSOR', 'LAG', 'FAILURES', 'LAST DELIVERED', 'LAST ERROR'], res.items.map((s) => [
        s.sink, s.state, s.cursor, s.lag, s.consecutiveFailures, time(s.lastDeliveredAt) ?? '-',
        s.lastError === null ? '-' : `${time(s.lastErrorAt)} ${s.lastError}`,
      ]))));
  },
};
