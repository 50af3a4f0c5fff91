import { int, positionals, required, str, strings, UsageError } from '../args.ts';
import { route, type ApiClient } from '../client.ts';
import type { Command, CommandContext, Flags } from '../command.ts';
import { decodeUtf8, readSecretInput } from '../input.ts';
import { readBytes } from '../files.ts';
import { table, time } from '../output.ts';

/** Values of a secret per environment: set, get, history, rollback. Inventory lives in secrets.ts. */

interface WriteResult {
  name: string;
  environment: string;
  version: number;
  previousVersion: number | null;
}

const META_FLAGS = ['owner', 'label', 'purpose', 'classification', 'tag'] as const;

async function readValue(ctx: CommandContext, name: string): Promise<string> {
  const file = str(ctx.flags, 'file');
  if (file !== undefined) {
    return decodeUtf8(await readBytes(file, '--file'), `--file ${file}`);
  }
  return readSecretInput(ctx.deps.stdin, ctx.deps.stderr, `Value for ${name} (input hidden): `);
}

function creation(name: string, flags: Flags) {
  const tags = strings(flags, 'tag');
  return {
    name,
    owner: str(flags, 'owner')!,
    ...(str(flags, 'label') !== undefined ? { label: str(flags, 'label') } : {}),
    ...(str(flags, 'purpose') !== undefined ? { purpose: str(flags, 'purpose') } : {}),
    ...(str(flags, 'classification') !== undefined ? { classification: str(flags, 'classification') } : {}),
    ...(tags.length > 0 ? { tags } : {}),
  };
}

/** Writes; when the secret does not exist yet and an owner was given, creates it first. */
async function writeCreating(api: ApiClient, name: string, env: string, body: object, flags: Flags) {
  const put = () => api.send<WriteResult>('PUT', route`/v1/secrets/${name}/values/${env}`, { body });
  const first = await put();
  if (first.ok || first.error.code !== 'SECRET_NOT_FOUND') return { outcome: first, created: null };
  if (str(flags, 'owner') === undefined) {
    first.error.hint = 'to create it, pass --owner (a person or team), e.g. --owner you@example.com';
    throw first.error;
  }
  const created = await api.send<{ name: string; owner: string }>('POST', '/v1/secrets', { body: creation(name, flags) });
  // SECRET_EXISTS: someone created it meanwhile (write to it), or it is soft-deleted (the write says so).
  if (!created.ok && created.error.code !== 'SECRET_EXISTS') return { outcome: created, created: null };
  const second = await put();
  if (!second.ok && second.error.code === 'SECRET_NOT_FOUND') {
    second.error.hint = `the name is taken by a soft-deleted secret; restore it first: keyhold secrets restore ${name}`;
  }
  return { outcome: second, created: created.ok ? created.data : null };
}

const set: Command = {
  name: 'set',
  summary: 'Write a new version of a value (from stdin or --file), creating the secret with --owner',
  usage: 'secrets set NAME --env E [--file PATH] [--cas N] [--reason TEXT] [--owner O --label L --purpose P --classification C --tag T ...]',
  help: [
    'The value is read from --file (byte for byte) or stdin, NEVER from an argument (shell history).',
    'From stdin, ONE trailing newline (\\n or \\r\\n) is stripped, so `echo s3cr3t | keyhold secrets set ...`',
    'stores "s3cr3t". On a terminal the value is prompted for without echo.',
    '--cas N        write only if the current version is N (0: only if there is no value yet)',
    '--owner O      create the secret first if it does not exist (required for that); --label, --purpose,',
    '               --classification (public|internal|confidential|restricted) and --tag (repeatable)',
    '               apply only at creation.',
    'With --json: the server\'s write result plus "created": true|false.',
  ],
  options: {
    env: { type: 'string' }, file: { type: 'string' }, cas: { type: 'string' }, reason: { type: 'string' },
    owner: { type: 'string' }, label: { type: 'string' }, purpose: { type: 'string' }, classification: { type: 'string' },
    tag: { type: 'string', multiple: true },
  },
  async run(ctx) {
    const { args, flags, api, out } = ctx;
    if (args.length > 1) {
      throw new UsageError('the value is not taken as an argument (it would be kept in shell history)', 'pipe it on stdin or use --file PATH');
    }
    const [name] = positionals(args, ['NAME'], set.usage) as [string];
    const env = required(flags, 'env', 'development');
    const cas = int(flags, 'cas', 0, 2_147_483_647);
    const reason = str(flags, 'reason');
    const value = await readValue(ctx, name);
    if (value === '') throw new UsageError('the value is empty', 'pipe the value on stdin or use --file PATH');
    const body = { value, ...(cas !== undefined ? { cas } : {}), ...(reason !== undefined ? { reason } : {}) };
    const { outcome, created } = await writeCreating(api, name, env, body, flags);
    if (!outcome.ok) throw outcome.error;
    const result = outcome.data as WriteResult;
    if (!created && !out.json && META_FLAGS.some((f) => flags[f] !== undefined)) {
      out.note(`note: secret ${name} already existed; --owner/--label/--purpose/--classification/--tag apply only at creation`);
    }
    out.result({ ...result, created: created !== null }, () => [
      ...(created ? [`Created secret ${name} (owner ${created.owner}).`] : []),
      `${name}@${env}: version ${result.version} is current` + (result.previousVersion !== null ? ` (was ${result.previousVersion}).` : '.'),
    ].join('\n'));
  },
};

const LABELS = ['current', 'previous', 'pending'];

const get: Command = {
  name: 'get',
  summary: 'Print a value (current, or a --version or --label)',
  usage: 'secrets get NAME --env E [--version N | --label current|previous|pending]',
  help: ['Prints just the value and a newline; with --json the server\'s answer (value, version, createdAt).'],
  options: { env: { type: 'string' }, version: { type: 'string' }, label: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [name] = positionals(args, ['NAME'], get.usage) as [string];
    const env = required(flags, 'env', 'development');
    const version = int(flags, 'version', 1, 2_147_483_647);
    const label = str(flags, 'label');
    if (version !== undefined && label !== undefined) throw new UsageError('give --version or --label, not both');
    if (label !== undefined && !LABELS.includes(label)) throw new UsageError(`--label must be one of ${LABELS.join(', ')}`);
    const res = await api.call<{ value: string }>('GET', route`/v1/secrets/${name}/values/${env}`, { query: { version, label } });
    out.result(res, () => res.value);
  },
};

interface VersionInfo {
  version: number; labels: string[]; createdAt: string; createdBy: string; reason: string;
  supersededAt: string | null; destroyedAt: string | null;
}

const history: Command = {
  name: 'history',
  summary: 'List the versions of a value (never the values)',
  usage: 'secrets history NAME --env E',
  options: { env: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [name] = positionals(args, ['NAME'], history.usage) as [string];
    const env = required(flags, 'env', 'development');
    const res = await api.call<{ versions: VersionInfo[] }>('GET', route`/v1/secrets/${name}/values/${env}/versions`);
    out.result(res, () => (res.versions.length === 0 ? `${name} has no versions in ${env}.` : table(
      ['VERSION', 'LABELS', 'CREATED', 'BY', 'STATE', 'REASON'],
      res.versions.map((v) => [v.version, v.labels.join(','), time(v.createdAt), v.createdBy,
        v.destroyedAt ? `destroyed ${time(v.destroyedAt)}` : v.supersededAt ? `superseded ${time(v.supersededAt)}` : 'live', v.reason]),
    )));
  },
};

const rollback: Command = {
  name: 'rollback',
  summary: 'Make the previous version current again (within the rollback window)',
  usage: 'secrets rollback NAME --env E [--cas N]',
  help: ['--cas N   roll back only if the current version is still N'],
  options: { env: { type: 'string' }, cas: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [name] = positionals(args, ['NAME'], rollback.usage) as [string];
    const env = required(flags, 'env', 'development');
    const cas = int(flags, 'cas', 0, 2_147_483_647);
    const res = await api.call<WriteResult>('POST', route`/v1/secrets/${name}/values/${env}/rollback`, { body: cas !== undefined ? { cas } : {} });
    out.result(res, () => `${name}@${env}: version ${res.version} is current again (was ${res.previousVersion}).`);
  },
};

export const valueCommands: Command[] = [set, get, history, rollback];
