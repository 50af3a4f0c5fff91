import { int, positionals, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { readSecretInput } from '../input.ts';
import { fields } from '../output.ts';

interface SealStatus {
  initialized: boolean;
  sealed: boolean;
  type: string | null;
  threshold: number;
  shares: number;
  progress: number;
  /** Absent from servers older than this CLI. */
  auditWritable?: boolean;
  /** Absent from servers older than this CLI. */
  auditAppendOnly?: 'privileges' | 'trigger';
}

const APPEND_ONLY: Record<NonNullable<SealStatus['auditAppendOnly']>, string> = {
  privileges: "by database privileges (the server's database user cannot change, remove or truncate events)",
  trigger: "by a trigger only, which the server's database user could disable (see 'keyhold migrate --grant-to')",
};

function describeStatus(s: SealStatus, addr: string): string {
  return fields([
    ['Address', addr],
    ['Initialized', s.initialized ? 'yes' : 'no'],
    ['Sealed', s.sealed ? 'yes' : 'no'],
    ['Seal type', s.type],
    ['Threshold', s.initialized ? `${s.threshold} of ${s.shares} shares` : null],
    ['Unseal progress', s.sealed && s.initialized ? `${s.progress}/${s.threshold}` : null],
    ['Audit log', s.auditWritable === undefined ? null : s.auditWritable ? 'writable' : 'NOT WRITABLE: audited actions are refused (see the server log)'],
    ['Append-only', s.auditAppendOnly === undefined ? null : APPEND_ONLY[s.auditAppendOnly]],
  ]);
}

const init: Command = {
  name: 'init',
  summary: 'Initialise a new server: root key shares and the root token, shown once',
  usage: 'init [--shares 5] [--threshold 3]',
  help: [
    'Splits the root key into --shares unseal shares, any --threshold of which unseal the server.',
    'Every share and the root token are printed ONCE and never again: give each share to a different',
    'person and store them separately. The server is left sealed.',
  ],
  options: { shares: { type: 'string' }, threshold: { type: 'string' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], init.usage);
    const shares = int(flags, 'shares', 1, 16) ?? 5;
    const threshold = int(flags, 'threshold', 1, 16) ?? Math.min(3, shares);
    if (threshold > shares) throw new UsageError(`--threshold (${threshold}) cannot exceed --shares (${shares})`);
    const res = await api.call<{ shares: string[]; threshold: number; rootToken: string }>('POST', '/v1/sys/init', { body: { shares, threshold } });
    out.result(res, () => [
      'WARNING: the unseal shares and the root token below are shown ONCE and cannot be recovered.',
      'Store each share separately (one per person or vault); anyone holding',
      `${res.threshold} shares can unseal this server and read every secret.`,
      '',
      ...res.shares.map((share, i) => `Unseal share ${i + 1}: ${share}`),
      '',
      `Root token: ${res.rootToken}`,
      '',
      `The server is sealed. Unseal it by running 'keyhold unseal' ${res.threshold} times, one share each.`,
    ].join('\n'));
  },
};

const unseal: Command = {
  name: 'unseal',
  summary: 'Submit one unseal share (read from stdin, or prompted without echo)',
  usage: 'unseal',
  help: [
    'Reads ONE share per run: from stdin when piped, or at a hidden prompt on a terminal.',
    'The share is never accepted as an argument, so it cannot end up in shell history.',
    'Run it once per share until the threshold is reached.',
  ],
  options: {},
  async run({ args, api, out, deps }) {
    if (args.length > 0) {
      throw new UsageError('the share is not taken as an argument (it would be kept in shell history)', 'pipe it on stdin or type it at the prompt');
    }
    const share = (await readSecretInput(deps.stdin, deps.stderr, 'Unseal share (input hidden): ')).trim();
    if (share === '') throw new UsageError('no share given on stdin');
    if (/\s/.test(share)) throw new UsageError('stdin holds more than one share', 'unseal takes ONE share per run; run it again for the next');
    const status = await api.call<SealStatus>('POST', '/v1/sys/unseal', { body: { share } });
    out.result(status, () => (status.sealed
      ? `Share accepted. Unseal progress: ${status.progress}/${status.threshold}; still sealed.`
      : 'Unsealed.'));
  },
};

const seal: Command = {
  name: 'seal',
  summary: 'Seal the server: drop the root key from memory (root token)',
  usage: 'seal',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], seal.usage);
    const status = await api.call<SealStatus>('POST', '/v1/sys/seal');
    out.result(status, () => `Sealed. Unseal with 'keyhold unseal' (${status.threshold} shares).`);
  },
};

const status: Command = {
  name: 'status',
  summary: 'Is the server initialised? sealed? unseal progress',
  usage: 'status',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], status.usage);
    const res = await api.call<SealStatus>('GET', '/v1/sys/status');
    out.result(res, () => describeStatus(res, api.addr));
  },
};

export const systemCommands: Command[] = [init, unseal, seal, status];
