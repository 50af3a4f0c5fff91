import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { int, positionals, str, UsageError } from '../args.ts';
import type { Query } from '../client.ts';
import type { Command, Flags, Group } from '../command.ts';
import { writePrivateFile } from '../files.ts';
import { printable, table, time } from '../output.ts';
import { timeText } from '../../modules/audit/event.ts';
import { verifyExportFiles } from './audit-offline.ts';
import { sinksCommand } from './audit-sinks.ts';

/** The `audit` group: reading the trail needs audit:read (the auditor role, or root). */

interface AuditEvent {
  seq: number; time: number; tenantId: string | null; actor: { type: string; id: string }; action: string;
  resource: { type: string; id: string | null; name: string | null }; environment: string | null; secretVersion: number | null;
  outcome: string; reason: string | null; context: Record<string, string>;
}
type ListItem = AuditEvent & { repeat: number; lastSeq: number; lastTime: number };
interface UsageSpan { first: string; last: string; count: number }
interface Usage { secret: string; actors: Array<{ actor: { type: string; id: string }; first: string; last: string; count: number; use: UsageSpan | null; reveal: UsageSpan | null }> }
interface VerifyResult {
  ok: boolean; events: number; headSeq: number | null; checkpoints: number; lastSeq: number | null; firstBadSeq: number | null; problem: string | null; unsigned?: number | null;
  /** Offline only (audit-offline.ts). */
  firstSeq?: number | null; duplicates?: number; checkpointBeyond?: number | null;
}

const POLL_MS = 1000;
const TAIL_PAGE = 1000;
const OUTCOMES = ['allowed', 'denied', 'failed'];

const filterOptions = {
  action: { type: 'string' }, actor: { type: 'string' }, secret: { type: 'string' }, outcome: { type: 'string' },
  from: { type: 'string' }, to: { type: 'string' }, 'all-tenants': { type: 'boolean' },
} as const;
const filterHelp = [
  '--action A      an action (secret.reveal), or a prefix ending in "." (secret.)',
  '--actor ID      a user, machine or root id',
  '--secret NAME   events about one secret',
  '--outcome O     allowed, denied or failed',
  '--from/--to T   a time range (ISO 8601, e.g. 2026-06-01 or 2026-06-01T12:00:00Z; --to is exclusive, after --from)',
  '--all-tenants   every tenant and the system events (root only)',
];

/** An ISO 8601 flag normalised to a full UTC date-time, or a usage error naming it. */
function isoFlag(flags: Flags, name: string): string | undefined {
  const v = str(flags, name);
  if (v === undefined) return undefined;
  const ms = Date.parse(v);
  if (Number.isNaN(ms)) throw new UsageError(`--${name} must be an ISO 8601 time (got "${v}")`, `e.g. --${name} 2026-06-01T12:00:00Z`);
  return new Date(ms).toISOString();
}

function filterQuery(flags: Flags): Query {
  const outcome = str(flags, 'outcome');
  if (outcome !== undefined && !OUTCOMES.includes(outcome)) throw new UsageError(`--outcome must be one of ${OUTCOMES.join(', ')} (got "${outcome}")`);
  return {
    action: str(flags, 'action'), actor: str(flags, 'actor'), secret: str(flags, 'secret'), outcome,
    from: isoFlag(flags, 'from'), to: isoFlag(flags, 'to'), allTenants: flags['all-tenants'] === true ? true : undefined,
  };
}

// Human output prints every text field through printable(): a row inserted by hand into the log can hold
// terminal escapes, line breaks or a megabyte in any of them, and a time no date can hold (shown as stored).
const at = (ms: number) => time(timeText(ms));
const who = (e: AuditEvent) => printable(`${e.actor.type}:${e.actor.id}`);
const what = (e: AuditEvent) => printable((e.resource.type === 'secret' ? e.resource.name : [e.resource.type, e.resource.name ?? e.resource.id].filter(Boolean).join(':')) ?? '');
const outcome = (e: AuditEvent & { repeat?: number }) => printable(e.repeat !== undefined && e.repeat > 1 ? `${e.outcome} x${e.repeat}` : e.outcome);
const shown = (text: string | null) => (text === null ? null : printable(text));

/** One event as one line, for streams where a table cannot be aligned in advance. */
function eventLine(e: AuditEvent): string {
  const where = e.environment ? `@${printable(e.environment)}` : '';
  const version = e.secretVersion !== null ? ` v${e.secretVersion}` : '';
  const reason = e.reason ? ` (${printable(e.reason)})` : '';
  return `${at(e.time)}  #${e.seq}  ${outcome(e).padEnd(7)}  ${printable(e.action)}  ${who(e)}  ${what(e) || '-'}${where}${version}${reason}`;
}

const list: Command = {
  name: 'list',
  summary: 'List events, newest first; identical denials within a minute show once with a count',
  usage: 'audit list [--action A] [--actor ID] [--secret NAME] [--outcome O] [--from T] [--to T] [--limit N] [--after SEQ] [--oldest-first]',
  help: [
    ...filterHelp,
    '--limit N       items per page (1-1000, default 100); the next page is named on stderr',
    '--after SEQ     the next page: events past SEQ in the listing order (older than SEQ; newer with --oldest-first)',
    '--oldest-first  list the oldest events first (default: newest first)',
    'With --json: {"items": [...], "next": SEQ | null}.',
  ],
  options: { ...filterOptions, limit: { type: 'string' }, after: { type: 'string' }, 'oldest-first': { type: 'boolean' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], list.usage);
    const after = int(flags, 'after', 0, Number.MAX_SAFE_INTEGER);
    const query = { ...filterQuery(flags), limit: int(flags, 'limit', 1, 1000), after, order: flags['oldest-first'] === true ? 'asc' : undefined };
    const page = await api.call<{ items: ListItem[]; next: number | null }>('GET', '/v1/audit/events', { query });
    out.result(page, () => (page.items.length === 0 ? 'No events.' : table(
      ['SEQ', 'TIME', 'OUTCOME', 'ACTION', 'ACTOR', 'RESOURCE', 'ENV', 'VERSION', 'REASON'],
      page.items.map((e) => [e.seq, at(e.time), outcome(e), printable(e.action), who(e), what(e), shown(e.environment), e.secretVersion, shown(e.reason)]),
    )));
    if (page.next !== null && !out.json) out.note(`More: add --after ${page.next}`);
  },
};

const tail: Command = {
  name: 'tail',
  summary: 'Print the latest events, or those after a sequence number; --follow keeps printing new ones',
  usage: 'audit tail [--after SEQ] [--follow] [--all-tenants]',
  help: [
    'Without --after: the last 20 events. --follow polls every second until Ctrl-C.',
    'With --json: one event per line (JSON lines), as it arrives.',
  ],
  options: { after: { type: 'string' }, follow: { type: 'boolean' }, 'all-tenants': { type: 'boolean' } },
  async run({ args, flags, api, out, deps }) {
    positionals(args, [], tail.usage);
    const allTenants = flags['all-tenants'] === true ? true : undefined;
    let after = int(flags, 'after', 0, Number.MAX_SAFE_INTEGER);
    const signal = deps.signal;
    for (;;) {
      const limit = after === undefined ? 20 : TAIL_PAGE;
      const page = await api.call<{ items: AuditEvent[]; next: number }>('GET', '/v1/audit/tail', { query: { after, limit, allTenants } });
      for (const e of page.items) out.line(out.json ? JSON.stringify(e) : eventLine(e));
      const behind = after !== undefined && page.items.length === limit;
      after = page.next;
      if (behind) continue;
      if (flags.follow !== true || signal?.aborted) return;
      try {
        await sleep(POLL_MS, undefined, signal ? { signal } : {});
      } catch {
        return; // interrupted while waiting: stop quietly, as Ctrl-C does
      }
    }
  },
};

/**
 * Writes a streamed download to stdout, or to `file` (mode 600, moved into place only once
 * complete, so a cut-off download never passes for a whole one). Returns whether it wrote a file.
 */
async function saveDownload(res: Response, file: string | undefined, stdout: { write(s: string): unknown }): Promise<boolean> {
  const body = res.body ? Readable.fromWeb(res.body as WebReadableStream<Uint8Array>) : Readable.from([]);
  if (file === undefined) {
    const decoder = new TextDecoder();
    await pipeline(body, new Writable({
      write(chunk: Buffer, _enc, done) {
        stdout.write(decoder.decode(chunk, { stream: true }));
        done();
      },
      final(done) {
        stdout.write(decoder.decode());
        done();
      },
    }));
    return false;
  }
  await writePrivateFile(file, body);
  return true;
}

const exportCommand: Command = {
  name: 'export',
  summary: 'Every matching event, oldest first and uncollapsed, as JSON lines or CSV',
  usage: 'audit export [--format json|csv] [--out FILE] [filters as for list]',
  help: [
    '--format F      json (JSON lines, the stored events: a whole-log export verifies offline) or csv (RFC 4180, header row)',
    "                text in CSV that a spreadsheet would run (starting = + - @ TAB CR, or ', also after a ; or line break)",
    "                gets a ' in front (docs/audit.md)",
    '--out FILE      write to FILE (mode 600, in place only once complete) instead of stdout',
    ...filterHelp,
  ],
  options: { ...filterOptions, format: { type: 'string' }, out: { type: 'string' } },
  async run({ args, flags, api, out, deps }) {
    positionals(args, [], exportCommand.usage);
    const format = str(flags, 'format') ?? 'json';
    if (format !== 'json' && format !== 'csv') throw new UsageError(`--format must be json or csv (got "${format}")`);
    const file = str(flags, 'out');
    const res = await api.download('/v1/audit/export', { query: { ...filterQuery(flags), format } });
    if (!(await saveDownload(res, file, deps.stdout))) return;
    out.note(`Wrote the ${format === 'csv' ? 'CSV' : 'JSON lines'} export to ${file}.`);
  },
};

const usage: Command = {
  name: 'usage',
  summary: 'Who used or revealed a secret, first and last time and how often (dormancy, forensics)',
  usage: 'audit usage NAME',
  options: {},
  async run({ args, api, out }) {
    const [name] = positionals(args, ['NAME'], usage.usage) as [string];
    const res = await api.call<Usage>('GET', '/v1/audit/usage', { query: { secret: name } });
    out.result(res, () => (res.actors.length === 0 ? `No use or reveal of ${name} is recorded.` : table(
      ['ACTOR', 'FIRST', 'LAST', 'USES', 'REVEALS'],
      res.actors.map((a) => [printable(`${a.actor.type}:${a.actor.id}`), shown(time(a.first)), shown(time(a.last)), a.use?.count ?? 0, a.reveal?.count ?? 0]),
    )));
  },
};

const checkpointsCommand: Command = {
  name: 'checkpoints',
  summary: 'Every signed checkpoint, oldest first, as JSON lines (root; for verifying an export offline)',
  usage: 'audit checkpoints [--out FILE]',
  help: ['--out FILE      write to FILE (mode 600, in place only once complete) instead of stdout'],
  options: { out: { type: 'string' } },
  async run({ args, flags, api, out, deps }) {
    positionals(args, [], checkpointsCommand.usage);
    const file = str(flags, 'out');
    if (await saveDownload(await api.download('/v1/audit/checkpoints'), file, deps.stdout)) out.note(`Wrote the checkpoints to ${file}.`);
  },
};

const publicKey: Command = {
  name: 'public-key',
  summary: 'The key that signs checkpoints: record it once, out of band, to verify exports against it later',
  usage: 'audit public-key',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], publicKey.usage);
    const res = await api.call<{ publicKey: string }>('GET', '/v1/audit/public-key');
    out.result(res, () => res.publicKey);
  },
};

const verify: Command = {
  name: 'verify',
  summary: 'Prove the audit chain and its signed checkpoints; exit 1 naming the first bad event',
  usage: 'audit verify [--events FILE [--checkpoints FILE] --public-key KEY [--partial]]',
  help: [
    'Without files: the server proves its own log. It shares walks: the answer comes from one that started less than',
    '10 seconds before the call, or after it.',
    'Offline, with no server: --events a whole-log export (audit export --all-tenants --format json, or a sink\'s',
    'JSON lines file), --public-key the key you recorded earlier (audit public-key), and optionally --checkpoints',
    '(audit checkpoints): the audit.checkpoint events inside the log are used as well. A cut tail is caught up to',
    'the last checkpoint known. A line repeating an event exactly is skipped. A file that starts past event 1 fails',
    '(its head was removed) unless --partial says it is a part, such as a rotated sink file: then it is proved from',
    'its first line, checkpoints past its last line are not held against it, and the answer names where it starts',
    'and, when a checkpoint covers more, where it ends.',
  ],
  options: { events: { type: 'string' }, checkpoints: { type: 'string' }, 'public-key': { type: 'string' }, partial: { type: 'boolean' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], verify.usage);
    const files = { events: str(flags, 'events'), checkpoints: str(flags, 'checkpoints'), key: str(flags, 'public-key') };
    const offline = Object.values(files).some((v) => v !== undefined);
    if (offline && (files.events === undefined || files.key === undefined)) {
      throw new UsageError('offline verification needs --events and --public-key (and --checkpoints unless the events carry their audit.checkpoint events)');
    }
    const r: VerifyResult = offline
      ? await verifyExportFiles({ events: files.events!, checkpoints: files.checkpoints ?? null }, files.key!, { partial: flags.partial === true })
      : await api.call<VerifyResult>('GET', '/v1/audit/verify');
    const unsigned = r.unsigned ? ` ${r.unsigned} event(s) after the newest checkpoint are chained but not yet signed.` : '';
    // A file that starts mid-chain proves only its own range: the operator must see that its head is not there.
    const start = r.firstSeq != null && r.firstSeq > 1
      ? ` The file starts at #${r.firstSeq}, not at #1: events before it are not in this file and were not verified.` : '';
    const repeats = r.duplicates ? ` ${r.duplicates} line(s) repeating an event exactly were skipped.` : '';
    // A part may end before the log: what a later checkpoint signs is not in it, and the operator must see that too.
    const end = r.checkpointBeyond != null
      ? ` The file ends at #${r.lastSeq}; a signed checkpoint covers up to #${r.checkpointBeyond}: events after #${r.lastSeq} are not in this file and were not verified.` : '';
    out.result(r, () => (r.ok
      ? `Audit log intact: ${r.events} events through #${r.lastSeq}, ${r.checkpoints} signed checkpoint(s) match.${unsigned}${start}${end}${repeats}`
      : `Audit log BROKEN at event #${r.firstBadSeq}: ${r.problem}`));
    return r.ok ? 0 : 1;
  },
};

export const auditGroup: Group = {
  name: 'audit',
  summary: 'The audit trail: list, tail, export, per-secret usage, verify, checkpoints, public-key (audit:read)',
  commands: [list, tail, exportCommand, usage, verify, checkpointsCommand, publicKey, sinksCommand],
};
