import { int, positionals, required, str, UsageError } from '../args.ts';
import { route } from '../client.ts';
import type { Command, Group } from '../command.ts';
import { parseUserJson, readJson, writePrivateFile } from '../files.ts';
import { fields, table, time } from '../output.ts';

/** The `automations` and `runs` groups: definitions that reference secrets by name, and what their runs did. */

interface Automation { id: string; revision: number; updatedAt: string; definition: { name: string; runAs: string; environments: string[]; trigger: { type: string }; steps: unknown[] } }
interface Saved { automation: Automation; webhookToken: string | null; webhookPath: string | null }
interface StepRecord { id: string; type: string; status: string; durationMs: number; log: string; error: string | null; output: unknown }
interface RunFields { id: string; automation: string; environment: string; trigger: string; status: string; startedAt: string; finishedAt: string | null; error: string | null }
interface Run extends RunFields { steps: StepRecord[] }

const savedText = (verb: string, res: Saved) => [
  `${verb} automation ${res.automation.definition.name} (revision ${res.automation.revision}).`,
  ...(res.webhookToken ? [`Webhook: POST ${res.webhookPath!.replace('<token>', res.webhookToken)}`, 'The token is shown only now: store it where the caller keeps its secrets.'] : []),
].join('\n');

const runText = (run: Run) => [
  fields([['Run', run.id], ['Automation', run.automation], ['Environment', run.environment], ['Status', run.status], ['Started', time(run.startedAt)], ['Finished', time(run.finishedAt)], ['Error', run.error]]),
  '',
  table(['STEP', 'TYPE', 'STATUS', 'MS', 'ERROR'], run.steps.map((s) => [s.id, s.type, s.status, s.durationMs, s.error])),
  ...run.steps.filter((s) => s.log).map((s) => `\n--- ${s.id} log ---\n${s.log}`),
].join('\n');

const create: Command = {
  name: 'create',
  summary: 'Save a new automation from a JSON definition (references are checked, literal credentials refused)',
  usage: 'automations create --file DEFINITION.json',
  options: { file: { type: 'string' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], create.usage);
    const body = await readJson(required(flags, 'file', '--file automation.json'), 'definition');
    const res = await api.call<Saved>('POST', '/v1/automations', { body });
    out.result(res, () => savedText('Saved', res));
  },
};

const update: Command = {
  name: 'update',
  summary: 'Replace a definition (check-and-set: --revision, default the current one)',
  usage: 'automations update NAME --file DEFINITION.json [--revision N]',
  options: { file: { type: 'string' }, revision: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [name] = positionals(args, ['NAME'], update.usage) as [string];
    const definition = await readJson(required(flags, 'file', '--file automation.json'), 'definition');
    const revision = int(flags, 'revision', 1, 2_147_483_647) ?? (await api.call<Automation>('GET', route`/v1/automations/${name}`)).revision;
    const res = await api.call<Saved>('PUT', route`/v1/automations/${name}`, { body: { definition, revision } });
    out.result(res, () => savedText('Updated', res));
  },
};

const list: Command = {
  name: 'list',
  summary: 'List automations',
  usage: 'automations list',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], list.usage);
    const res = await api.call<{ items: Automation[] }>('GET', '/v1/automations');
    out.result(res, () => table(['NAME', 'RUN AS', 'ENVIRONMENTS', 'TRIGGER', 'STEPS', 'REVISION', 'UPDATED'], res.items.map((a) => [
      a.definition.name, a.definition.runAs, a.definition.environments.join(','), a.definition.trigger.type, a.definition.steps.length, a.revision, time(a.updatedAt),
    ])));
  },
};

const show: Command = {
  name: 'show',
  summary: 'Print an automation definition (JSON: references only)',
  usage: 'automations show NAME',
  options: {},
  async run({ args, api, out }) {
    const [name] = positionals(args, ['NAME'], show.usage) as [string];
    const res = await api.call<Automation>('GET', route`/v1/automations/${name}`);
    out.result(res, () => JSON.stringify(res.definition, null, 2));
  },
};

const remove: Command = {
  name: 'delete',
  summary: 'Delete an automation (its run history stays)',
  usage: 'automations delete NAME',
  options: {},
  async run({ args, api, out }) {
    const [name] = positionals(args, ['NAME'], remove.usage) as [string];
    await api.call('DELETE', route`/v1/automations/${name}`);
    out.result({ deleted: name }, () => `Deleted automation ${name}.`);
  },
};

const run: Command = {
  name: 'run',
  summary: 'Run an automation now in an environment and print what each step did',
  usage: 'automations run NAME --env E [--input JSON | --input-file FILE] [--no-wait]',
  help: ['Exit code 1 when the run fails.'],
  options: { env: { type: 'string' }, input: { type: 'string' }, 'input-file': { type: 'string' }, 'no-wait': { type: 'boolean' } },
  async run({ args, flags, api, out }) {
    const [name] = positionals(args, ['NAME'], run.usage) as [string];
    const environment = required(flags, 'env', '--env staging');
    const inline = str(flags, 'input');
    const file = str(flags, 'input-file');
    if (inline && file) throw new UsageError('give --input or --input-file, not both');
    const input = inline ? parseUserJson(inline, '--input') : file ? await readJson(file, 'input') : undefined;
    const wait = flags['no-wait'] !== true;
    const res = await api.call<Run>('POST', route`/v1/automations/${name}/runs`, { body: { environment, wait, ...(input !== undefined ? { input } : {}) } });
    out.result(res, () => (wait ? runText(res) : `Started run ${res.id}.`));
    return res.status === 'failed' ? 1 : 0;
  },
};

const exportCmd: Command = {
  name: 'export',
  summary: 'Export automations (and with --env the connectors they use there) as versioned JSON: references, never values',
  usage: 'automations export [--names A,B] [--env E] [--out FILE]',
  options: { names: { type: 'string' }, env: { type: 'string' }, out: { type: 'string' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], exportCmd.usage);
    const names = str(flags, 'names');
    const env = str(flags, 'env');
    const doc = await api.call<{ automations: unknown[]; connectors: unknown[] }>('GET', '/v1/automations/export', { query: { names, environment: env } });
    const path = str(flags, 'out');
    if (path) {
      await writePrivateFile(path, JSON.stringify(doc, null, 2) + '\n');
      out.note(`Wrote ${doc.automations.length} automation(s) and ${doc.connectors.length} connector(s) to ${path}.`);
    } else {
      out.line(JSON.stringify(doc, null, 2));
    }
  },
};

const importCmd: Command = {
  name: 'import',
  summary: 'Import an export file into this tenant (its names resolve here; with --env, its connectors land in E)',
  usage: 'automations import FILE [--env E] [--overwrite]',
  options: { env: { type: 'string' }, overwrite: { type: 'boolean' } },
  async run({ args, flags, api, out }) {
    const [file] = positionals(args, ['FILE'], importCmd.usage) as [string];
    const document = await readJson(file, 'export file');
    const env = str(flags, 'env');
    const res = await api.call<{ automations: string[]; connectors: string[]; webhooks: Saved[] }>('POST', '/v1/automations/import', {
      body: { document, ...(env ? { environment: env } : {}), ...(flags.overwrite === true ? { overwrite: true } : {}) },
    });
    out.result(res, () => [
      `Imported automations: ${res.automations.join(', ') || '-'}; connectors: ${res.connectors.join(', ') || '-'}.`,
      ...res.webhooks.map((w) => savedText('Webhook trigger of', w)),
    ].join('\n'));
  },
};

const webhookToken: Command = {
  name: 'webhook-token',
  summary: 'Replace the webhook trigger token (the old one stops working)',
  usage: 'automations webhook-token NAME',
  options: {},
  async run({ args, api, out }) {
    const [name] = positionals(args, ['NAME'], webhookToken.usage) as [string];
    const res = await api.call<Saved>('POST', route`/v1/automations/${name}/webhook-token`);
    out.result(res, () => savedText('New webhook token for', res));
  },
};

const dependents: Command = {
  name: 'dependents',
  summary: 'What depends on a secret: connectors per environment and the automations using it',
  usage: 'automations dependents SECRET',
  options: {},
  async run({ args, api, out }) {
    const [name] = positionals(args, ['SECRET'], dependents.usage) as [string];
    const res = await api.call<{ connectors: Array<{ environment: string; connector: string; slot: string }>; automations: Array<{ automation: string; environment: string; via: string }> }>('GET', route`/v1/secrets/${name}/dependents`);
    out.result(res, () => [
      table(['CONNECTOR', 'ENVIRONMENT', 'SLOT'], res.connectors.map((c) => [c.connector, c.environment, c.slot])),
      '',
      table(['AUTOMATION', 'ENVIRONMENT', 'VIA'], res.automations.map((a) => [a.automation, a.environment, a.via])),
    ].join('\n'));
  },
};

export const automationsGroup: Group = {
  name: 'automations', summary: 'Automation definitions, runs, export/import, dependents',
  commands: [create, list, show, update, remove, run, exportCmd, importCmd, webhookToken, dependents],
};

const runsList: Command = {
  name: 'list',
  summary: 'Recent runs, newest first',
  usage: 'runs list [--automation NAME] [--limit N]',
  options: { automation: { type: 'string' }, limit: { type: 'string' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], runsList.usage);
    // The list's steps carry no output or log (runs show has them); the table shows run columns only.
    const res = await api.call<{ items: RunFields[] }>('GET', '/v1/runs', { query: { automation: str(flags, 'automation'), limit: int(flags, 'limit', 1, 500) } });
    out.result(res, () => table(['RUN', 'AUTOMATION', 'ENVIRONMENT', 'TRIGGER', 'STATUS', 'STARTED'], res.items.map((r) => [r.id, r.automation, r.environment, r.trigger, r.status, time(r.startedAt)])));
  },
};

const runsShow: Command = {
  name: 'show',
  summary: 'One run: each step, its status, its (redacted) log',
  usage: 'runs show ID',
  options: {},
  async run({ args, api, out }) {
    const [id] = positionals(args, ['ID'], runsShow.usage) as [string];
    const res = await api.call<Run>('GET', route`/v1/runs/${id}`);
    out.result(res, () => runText(res));
  },
};

export const runsGroup: Group = { name: 'runs', summary: 'Automation runs and their (redacted) logs', commands: [runsList, runsShow] };
