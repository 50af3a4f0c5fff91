import { writeFile } from 'node:fs/promises';
import { int, positionals, str, UsageError } from '../args.ts';
import type { Command, Group } from '../command.ts';
import { table } from '../output.ts';
import { CSV_HEADER, toCsvRow, type ListedEvent } from '../../modules/audit/queries.ts';
import type { AuditEvent } from '../../modules/audit/event.ts';

/** The `audit` group (needs audit:read): list, tail, export, usage, verify. */

const line = (e: ListedEvent) => [
  e.seq, new Date(e.time).toISOString().replace(/\.\d+Z$/, 'Z'), `${e.actor.type}:${e.actor.id.slice(0, 12)}`, e.action,
  e.resource.name ?? e.resource.type, e.environment ?? '-', e.secretVersion ?? '-', e.repeat ? `${e.outcome} x${e.repeat}` : e.outcome, e.reason ?? '',
];
const HEADERS = ['SEQ', 'TIME', 'ACTOR', 'ACTION', 'RESOURCE', 'ENV', 'VERSION', 'OUTCOME', 'REASON'];

const list: Command = {
  name: 'list',
  summary: 'List events, newest first; identical denials within a minute collapse with a count',
  usage: 'audit list [--action A | --action secret.] [--actor ID] [--secret NAME] [--outcome allowed|denied|failed] [--from ISO] [--to ISO] [--limit N]',
  options: { action: { type: 'string' }, actor: { type: 'string' }, secret: { type: 'string' }, outcome: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' }, limit: { type: 'string' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], list.usage);
    const query: Record<string, string | number | undefined> = { order: 'desc', limit: int(flags, 'limit', 1, 1000) ?? 50 };
    for (const k of ['action', 'actor', 'secret', 'outcome', 'from', 'to']) query[k] = str(flags, k);
    const res = await api.call<{ items: ListedEvent[] }>('GET', '/v1/audit/events', { query });
    out.result(res, () => table(HEADERS, res.items.map(line)));
  },
};

const tail: Command = {
  name: 'tail',
  summary: 'Print events after a sequence number (default: the last 20); --follow keeps polling',
  usage: 'audit tail [--after N] [--follow]',
  options: { after: { type: 'string' }, follow: { type: 'boolean' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], tail.usage);
    let after = int(flags, 'after', 0, Number.MAX_SAFE_INTEGER);
    if (after === undefined) {
      const recent = await api.call<{ items: ListedEvent[] }>('GET', '/v1/audit/events', { query: { order: 'desc', limit: 20 } });
      after = Math.max(0, (recent.items[recent.items.length - 1]?.seq ?? 1) - 1);
    }
    for (;;) {
      const page: { items: AuditEvent[] } = await api.call<{ items: AuditEvent[] }>('GET', '/v1/audit/tail', { query: { after } });
      for (const e of page.items) out.line(out.json ? JSON.stringify(e) : line(e).join('  '));
      if (page.items.length > 0) after = page.items[page.items.length - 1]!.seq;
      if (flags.follow !== true) return;
      if (page.items.length < 500) await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  },
};

const exportCommand: Command = {
  name: 'export',
  summary: "Every event of the tenant, uncollapsed, as JSON lines or CSV",
  usage: 'audit export [--format json|csv] [--out FILE]',
  options: { format: { type: 'string' }, out: { type: 'string' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], exportCommand.usage);
    const format = str(flags, 'format') ?? 'json';
    if (format !== 'json' && format !== 'csv') throw new UsageError('--format is json or csv');
    const parts: string[] = format === 'csv' ? [CSV_HEADER + '\r\n'] : [];
    let after = 0;
    for (;;) {
      const page = await api.call<{ items: AuditEvent[] }>('GET', '/v1/audit/tail', { query: { after } });
      for (const e of page.items) parts.push(format === 'csv' ? toCsvRow(e) + '\r\n' : JSON.stringify(e) + '\n');
      if (page.items.length < 500) break;
      after = page.items[page.items.length - 1]!.seq;
    }
    const file = str(flags, 'out');
    if (file) {
      await writeFile(file, parts.join(''), { mode: 0o600 });
      out.note(`Wrote ${parts.length - (format === 'csv' ? 1 : 0)} event(s) to ${file}.`);
    } else {
      for (const p of parts) out.line(p.replace(/\r?\n$/, ''));
    }
  },
};

const usage: Command = {
  name: 'usage',
  summary: 'First and last use/reveal of a secret, per actor',
  usage: 'audit usage NAME',
  options: {},
  async run({ args, api, out }) {
    const [name] = positionals(args, ['NAME'], usage.usage) as [string];
    const res = await api.call<{ actors: Array<{ actorType: string; actorId: string; action: string; count: number; firstAt: string; lastAt: string }> }>('GET', '/v1/audit/usage', { query: { secret: name } });
    out.result(res, () => table(['ACTOR', 'ACTION', 'COUNT', 'FIRST', 'LAST'], res.actors.map((a) => [`${a.actorType}:${a.actorId}`, a.action, a.count, a.firstAt, a.lastAt])));
  },
};

const verify: Command = {
  name: 'verify',
  summary: 'Prove the chain and its signed checkpoints; exit 1 naming the first bad event',
  usage: 'audit verify',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], verify.usage);
    const res = await api.call<{ ok: boolean; events: number; lastSeq: number | null; checkpoints: number; firstBadSeq: number | null; problem: string | null }>('GET', '/v1/audit/verify');
    out.result(res, () => (res.ok
      ? `Verified: ${res.events} events, chain intact up to ${res.lastSeq}, ${res.checkpoints} signed checkpoint(s) match.`
      : `BROKEN at event ${res.firstBadSeq}: ${res.problem}`));
    return res.ok ? 0 : 1;
  },
};

export const auditGroup: Group = { name: 'audit', summary: 'The audit trail (audit:read)', commands: [list, tail, exportCommand, usage, verify] };
