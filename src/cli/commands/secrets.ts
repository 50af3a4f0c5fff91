import { intList, positionals, str, UsageError } from '../args.ts';
import { route } from '../client.ts';
import type { Command, Group } from '../command.ts';
import { fields, table, time } from '../output.ts';
import { valueCommands } from './secret-values.ts';

/** The `secrets` group: inventory verbs here, value verbs in secret-values.ts (one file would pass 200 lines). */

interface SecretMeta {
  name: string; label: string; owner: string; purpose: string; classification: string; tags: string[];
  expiresAt: string | null; createdAt: string; createdBy: string; updatedAt: string; deletedAt: string | null; revision: number;
}
interface EnvironmentState {
  environment: string; currentVersion: number | null; pendingVersion: number | null; previousVersion: number | null; updatedAt: string;
}

const PAGE = 1000;

const list: Command = {
  name: 'list',
  summary: 'List secrets (metadata only), following every page',
  usage: 'secrets list [--prefix P] [--deleted]',
  help: ['--deleted   include soft-deleted secrets', 'With --json: {"items": [...], "next": null}, every page merged.'],
  options: { prefix: { type: 'string' }, deleted: { type: 'boolean' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], list.usage);
    const items: SecretMeta[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await api.call<{ items: SecretMeta[]; next: string | null }>('GET', '/v1/secrets', {
        query: { prefix: str(flags, 'prefix'), includeDeleted: flags.deleted === true ? true : undefined, after, limit: PAGE },
      });
      items.push(...page.items);
      if (page.next === null) break;
      after = page.next;
    }
    out.result({ items, next: null }, () => (items.length === 0 ? 'No secrets.' : table(
      ['NAME', 'OWNER', 'CLASSIFICATION', 'UPDATED', ...(flags.deleted ? ['DELETED'] : [])],
      items.map((s) => [s.name, s.owner, s.classification, time(s.updatedAt), ...(flags.deleted ? [time(s.deletedAt)] : [])]),
    )));
  },
};

const describe: Command = {
  name: 'describe',
  summary: 'Show a secret\'s metadata and its versions per environment',
  usage: 'secrets describe NAME',
  options: {},
  async run({ args, api, out }) {
    const [name] = positionals(args, ['NAME'], describe.usage) as [string];
    const s = await api.call<SecretMeta & { environments: EnvironmentState[] }>('GET', route`/v1/secrets/${name}`);
    out.result(s, () => [
      fields([
        ['Name', s.name], ['Label', s.label], ['Owner', s.owner], ['Purpose', s.purpose], ['Classification', s.classification],
        ['Tags', s.tags.join(', ')], ['Expires', time(s.expiresAt)], ['Created', `${time(s.createdAt)} by ${s.createdBy}`],
        ['Updated', time(s.updatedAt)], ['Revision', s.revision],
      ]),
      '',
      s.environments.length === 0 ? 'No values yet.' : table(
        ['ENVIRONMENT', 'CURRENT', 'PREVIOUS', 'PENDING', 'UPDATED'],
        s.environments.map((e) => [e.environment, e.currentVersion, e.previousVersion, e.pendingVersion, time(e.updatedAt)]),
      ),
    ].join('\n'));
  },
};

const remove: Command = {
  name: 'delete',
  summary: 'Soft-delete a secret (restorable; values are kept)',
  usage: 'secrets delete NAME',
  options: {},
  async run({ args, api, out }) {
    const [name] = positionals(args, ['NAME'], remove.usage) as [string];
    const res = await api.call<SecretMeta>('DELETE', route`/v1/secrets/${name}`);
    out.result(res, () => `Deleted ${name}. Undo with: keyhold secrets restore ${name}`);
  },
};

const restore: Command = {
  name: 'restore',
  summary: 'Restore a soft-deleted secret',
  usage: 'secrets restore NAME',
  options: {},
  async run({ args, api, out }) {
    const [name] = positionals(args, ['NAME'], restore.usage) as [string];
    const res = await api.call<SecretMeta>('POST', route`/v1/secrets/${name}/restore`);
    out.result(res, () => `Restored ${name}.`);
  },
};

const destroy: Command = {
  name: 'destroy',
  summary: 'Destroy versions for good (crypto-shred), or a whole soft-deleted secret',
  usage: 'secrets destroy NAME [--env E --versions 1,2]',
  help: [
    'With --env and --versions: destroys those versions of the value (never the current one).',
    'Without them: destroys the whole secret, which must be soft-deleted first. There is no undo.',
  ],
  options: { env: { type: 'string' }, versions: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [name] = positionals(args, ['NAME'], destroy.usage) as [string];
    const env = str(flags, 'env');
    const versions = intList(flags, 'versions');
    // Without this check, "--env E" alone would quietly widen into destroying the whole secret.
    if ((env === undefined) !== (versions === undefined)) throw new UsageError('--env and --versions go together', `usage: keyhold ${destroy.usage}`);
    const body = env !== undefined ? { environment: env, versions } : {};
    const res = await api.call<{ destroyed: number | 'all' }>('POST', route`/v1/secrets/${name}/destroy`, { body });
    out.result(res, () => (res.destroyed === 'all'
      ? `Destroyed ${name} and every version of it.`
      : `Destroyed ${res.destroyed} version(s) of ${name} in ${env}.`));
  },
};

export const secretsGroup: Group = {
  name: 'secrets',
  summary: 'Secrets and their values per environment',
  commands: [...valueCommands, list, describe, remove, restore, destroy],
};
