import { positionals, required, str, strings, UsageError } from '../args.ts';
import { route } from '../client.ts';
import type { Command, Flags, Group } from '../command.ts';
import { decodeUtf8 } from '../input.ts';
import { parseUserJson, readBytes, refuseDuplicateKeys } from '../files.ts';
import { fields, table, time } from '../output.ts';

/** The `connectors` group: integration instances per environment (settings and slot → secret names, never values). */

interface Connector {
  name: string; environment: string; type: string; settings: Record<string, unknown>; slots: Record<string, string>;
  owner: string; personal: boolean; createdAt: string; updatedAt: string; createdBy: string; revision: number;
}
interface Health { ok: boolean; latencyMs: number; status?: number; detail: string; reason: string }
interface Definition { type?: string; owner?: string; settings?: Record<string, unknown>; slots?: Record<string, string> }

const DEFINE_OPTIONS = { env: { type: 'string' }, set: { type: 'string', multiple: true }, slot: { type: 'string', multiple: true }, file: { type: 'string' }, owner: { type: 'string' } } as const;
const DEFINE_HELP = [
  '--set KEY=VALUE     a setting; dotted keys nest (--set auth.kind=bearer); numbers, true/false and JSON [..] {..} are parsed',
  '--slot SLOT=SECRET  which secret fills a slot (resolved in --env); repeatable',
  '--file PATH         a JSON definition {"type", "owner", "settings", "slots"}; --set/--slot/--owner apply on top',
  'Settings are not secret: credentials go in secrets, named by slots. See docs/connectors.md.',
];

/** "a.b=1" → settings.a.b = 1, parsing the value as a number, boolean or JSON when it looks like one. */
export function applySet(settings: Record<string, unknown>, assignment: string): void {
  const eq = assignment.indexOf('=');
  if (eq <= 0) throw new UsageError(`--set needs KEY=VALUE (got "${assignment}")`, 'e.g. --set baseUrl=https://api.example.com/v1');
  const path = assignment.slice(0, eq).split('.');
  const raw = assignment.slice(eq + 1);
  let value: unknown = raw;
  if (/^-?\d+$/.test(raw)) value = Number(raw);
  else if (raw === 'true' || raw === 'false') value = raw === 'true';
  else if (/^[[{]/.test(raw)) {
    try {
      value = JSON.parse(raw);
    } catch {
      throw new UsageError(`--set ${path.join('.')}: the value looks like JSON but does not parse`);
    }
    refuseDuplicateKeys(raw, `--set ${path.join('.')}`);
  }
  let node = settings;
  for (const key of path.slice(0, -1)) {
    if (key === '' || key === '__proto__') throw new UsageError(`--set: bad key "${path.join('.')}"`);
    const next = node[key];
    node = (node[key] = typeof next === 'object' && next !== null && !Array.isArray(next) ? next : {}) as Record<string, unknown>;
  }
  const last = path.at(-1)!;
  if (last === '' || last === '__proto__') throw new UsageError(`--set: bad key "${path.join('.')}"`);
  node[last] = value;
}

async function definitionFrom(flags: Flags, base: Definition): Promise<Definition> {
  const def: Definition = structuredClone(base);
  const file = str(flags, 'file');
  if (file) {
    const parsed = parseUserJson(decodeUtf8(await readBytes(file, '--file'), `--file ${file}`), `--file ${file}`);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError(`--file ${file} must hold a JSON object`);
    const { type, owner, settings, slots, ...rest } = parsed as Record<string, unknown>;
    if (Object.keys(rest).length) throw new UsageError(`--file ${file}: unknown field(s) ${Object.keys(rest).join(', ')} (type, owner, settings, slots)`);
    Object.assign(def, { ...(type !== undefined ? { type } : {}), ...(owner !== undefined ? { owner } : {}), ...(settings !== undefined ? { settings } : {}), ...(slots !== undefined ? { slots } : {}) });
  }
  for (const s of strings(flags, 'set')) applySet((def.settings ??= {}), s);
  for (const s of strings(flags, 'slot')) {
    const m = /^([^=]+)=(.+)$/.exec(s);
    if (!m) throw new UsageError(`--slot needs SLOT=SECRET (got "${s}")`, 'e.g. --slot token=STRIPE_API_KEY');
    (def.slots ??= {})[m[1]!] = m[2]!;
  }
  const owner = str(flags, 'owner');
  if (owner) def.owner = owner;
  return def;
}

const show = (c: Connector) => fields([
  ['Name', c.name], ['Environment', c.environment], ['Type', c.type], ['Owner', c.owner], ['Personal credential', c.personal ? 'yes' : 'no'],
  ['Slots', Object.entries(c.slots).map(([s, n]) => `${s}=${n}`).join(', ')], ['Settings', JSON.stringify(c.settings)],
  ['Updated', `${time(c.updatedAt)} (revision ${c.revision})`],
]);

const create: Command = {
  name: 'create', summary: 'Create a connector in an environment', usage: 'connectors create NAME --env E --type http|postgres|webhook-signer --owner O [--set K=V ...] [--slot S=SECRET ...] [--file F]',
  help: DEFINE_HELP, options: { ...DEFINE_OPTIONS, type: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [name] = positionals(args, ['NAME'], create.usage) as [string];
    const env = required(flags, 'env', 'production');
    const def = await definitionFrom(flags, {});
    const type = str(flags, 'type') ?? def.type;
    if (!type) throw new UsageError('--type is required (or "type" in --file)', 'e.g. --type http');
    if (!def.owner) throw new UsageError('--owner is required (or "owner" in --file)', 'e.g. --owner payments-team');
    const c = await api.call<Connector>('POST', route`/v1/connectors/${env}`, { body: { name, type, owner: def.owner, settings: def.settings ?? {}, slots: def.slots ?? {} } });
    out.result(c, () => `Created ${c.type} connector ${c.name} in ${c.environment}.`);
  },
};

const list: Command = {
  name: 'list', summary: 'List connectors (one environment, or all)', usage: 'connectors list [--env E]', options: { env: { type: 'string' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], list.usage);
    const env = str(flags, 'env');
    const res = await api.call<{ items: Connector[] }>('GET', env ? route`/v1/connectors/${env}` : '/v1/connectors');
    out.result(res, () => (res.items.length === 0 ? 'No connectors.' : table(['ENVIRONMENT', 'NAME', 'TYPE', 'OWNER', 'SLOTS', 'PERSONAL'],
      res.items.map((c) => [c.environment, c.name, c.type, c.owner, Object.entries(c.slots).map(([s, n]) => `${s}=${n}`).join(','), c.personal ? 'yes' : '']))));
  },
};

const showCmd: Command = {
  name: 'show', summary: 'Show a connector: settings and slot names, never values', usage: 'connectors show NAME --env E', options: { env: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [name] = positionals(args, ['NAME'], showCmd.usage) as [string];
    const c = await api.call<Connector>('GET', route`/v1/connectors/${required(flags, 'env', 'production')}/${name}`);
    out.result(c, () => show(c));
  },
};

const update: Command = {
  name: 'update', summary: 'Change settings, slots or owner (read, merge, write back guarded by revision)', usage: 'connectors update NAME --env E [--set K=V ...] [--slot S=SECRET ...] [--owner O] [--file F]',
  help: DEFINE_HELP, options: DEFINE_OPTIONS,
  async run({ args, flags, api, out }) {
    const [name] = positionals(args, ['NAME'], update.usage) as [string];
    const env = required(flags, 'env', 'production');
    const current = await api.call<Connector>('GET', route`/v1/connectors/${env}/${name}`);
    const def = await definitionFrom(flags, { owner: current.owner, settings: current.settings, slots: current.slots });
    if (def.type !== undefined && def.type !== current.type) throw new UsageError(`a connector's type cannot change (it is ${current.type}); delete and create instead`);
    const c = await api.call<Connector>('PATCH', route`/v1/connectors/${env}/${name}`, { body: { settings: def.settings, slots: def.slots, owner: def.owner, revision: current.revision } });
    out.result(c, () => `Updated connector ${c.name} in ${c.environment} (revision ${c.revision}).`);
  },
};

const remove: Command = {
  name: 'delete', summary: 'Delete a connector', usage: 'connectors delete NAME --env E', options: { env: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [name] = positionals(args, ['NAME'], remove.usage) as [string];
    const c = await api.call<Connector>('DELETE', route`/v1/connectors/${required(flags, 'env', 'production')}/${name}`);
    out.result(c, () => `Deleted connector ${c.name} from ${c.environment}.`);
  },
};

const test: Command = {
  name: 'test', summary: 'Run the health check with the current values (exit 1 when it fails)', usage: 'connectors test NAME --env E', options: { env: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [name] = positionals(args, ['NAME'], test.usage) as [string];
    const r = await api.call<Health>('POST', route`/v1/connectors/${required(flags, 'env', 'production')}/${name}/test`, { body: {} });
    out.result(r, () => `${r.ok ? 'OK' : 'FAILED'} ${name}: ${r.detail} (${r.reason}, ${r.latencyMs} ms)`);
    return r.ok ? 0 : 1;
  },
};

const uses: Command = {
  name: 'uses', summary: 'Which connectors depend on a secret, in every environment', usage: 'connectors uses SECRET', options: {},
  async run({ args, api, out }) {
    const [secret] = positionals(args, ['SECRET'], uses.usage) as [string];
    const res = await api.call<{ items: Array<{ environment: string; connector: string; slot: string }> }>('GET', route`/v1/secrets/${secret}/connectors`);
    out.result(res, () => (res.items.length === 0 ? `No connector uses ${secret}.` : table(['ENVIRONMENT', 'CONNECTOR', 'SLOT'], res.items.map((d) => [d.environment, d.connector, d.slot]))));
  },
};

export const connectorsGroup: Group = { name: 'connectors', summary: 'Connectors: integrations that use secrets without showing them', commands: [create, list, showCmd, update, remove, test, uses] };
