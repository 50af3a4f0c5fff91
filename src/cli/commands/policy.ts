import { int, parseWhole, positionals, str, UsageError } from '../args.ts';
import type { Command, Group } from '../command.ts';
import { parseUserJson, readText } from '../files.ts';
import { table, time } from '../output.ts';

/** The `policy` group: the tenant's own Cedar policies, and an offline test runner for them. */

interface Version { version: number; text: string; comment: string; createdAt: string; createdBy: string; active: boolean }

const show: Command = {
  name: 'show',
  summary: 'Print the tenant policy set in force (or --version N)',
  usage: 'policy show [--version N]',
  options: { version: { type: 'string' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], show.usage);
    const v = str(flags, 'version');
    const res = await api.call<Version>('GET', v === undefined ? '/v1/policies' : `/v1/policies/versions/${parseWhole('--version', v, 0, 2_147_483_647)}`);
    out.result(res, () => `# version ${res.version}${res.active ? ' (in force)' : ''}: ${res.comment}\n${res.text}`);
  },
};

const history: Command = {
  name: 'history',
  summary: 'List policy versions',
  usage: 'policy history',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], history.usage);
    const res = await api.call<{ items: Omit<Version, 'text'>[] }>('GET', '/v1/policies/versions');
    out.result(res, () => table(['VERSION', 'ACTIVE', 'CREATED', 'BY', 'COMMENT'], res.items.map((v) => [v.version, v.active ? 'yes' : '', time(v.createdAt), v.createdBy, v.comment])));
  },
};

const apply: Command = {
  name: 'apply',
  summary: 'Validate a Cedar file and make it the tenant policy set (a new version)',
  usage: 'policy apply FILE [--comment TEXT] [--cas VERSION]',
  options: { comment: { type: 'string' }, cas: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [file] = positionals(args, ['FILE'], apply.usage) as [string];
    const text = await readText(file, 'policy file');
    const comment = str(flags, 'comment');
    const cas = int(flags, 'cas', 0, 2_147_483_647);
    const res = await api.call<Version>('PUT', '/v1/policies', { body: { text, ...(comment ? { comment } : {}), ...(cas !== undefined ? { cas } : {}) } });
    out.result(res, () => `Policy version ${res.version} is in force.`);
  },
};

const validate: Command = {
  name: 'validate',
  summary: 'Check a Cedar file against the server schema without applying it',
  usage: 'policy validate FILE',
  options: {},
  async run({ args, api, out }) {
    const [file] = positionals(args, ['FILE'], validate.usage) as [string];
    const res = await api.call<{ valid: boolean; errors: string[] }>('POST', '/v1/policies/validate', { body: { text: await readText(file, 'policy file') } });
    out.result(res, () => (res.valid ? 'Valid.' : `Invalid:\n${res.errors.map((e) => `  ${e}`).join('\n')}`));
    return res.valid ? 0 : 1;
  },
};

const diff: Command = {
  name: 'diff',
  summary: 'Line diff between two versions (0 = built-ins only)',
  usage: 'policy diff FROM TO',
  options: {},
  async run({ args, api, out }) {
    const [from, to] = positionals(args, ['FROM', 'TO'], diff.usage) as [string, string];
    const res = await api.call<{ diff: string }>('GET', `/v1/policies/diff?from=${parseWhole('FROM', from, 0, 2_147_483_647)}&to=${parseWhole('TO', to, 0, 2_147_483_647)}`);
    out.result(res, () => res.diff);
  },
};

const rollback: Command = {
  name: 'rollback',
  summary: 'Re-apply an older version as a new version',
  usage: 'policy rollback VERSION [--cas VERSION]',
  options: { cas: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [version] = positionals(args, ['VERSION'], rollback.usage) as [string];
    const cas = int(flags, 'cas', 0, 2_147_483_647);
    const res = await api.call<Version>('POST', '/v1/policies/rollback', { body: { version: parseWhole('VERSION', version, 0, 2_147_483_647), ...(cas !== undefined ? { cas } : {}) } });
    out.result(res, () => `Policy version ${res.version} (${res.comment}) is in force.`);
  },
};

const test: Command = {
  name: 'test',
  summary: 'Evaluate a file of expected decisions against the built-ins plus a policy file (offline, no server)',
  usage: 'policy test CASES.json [--policies FILE.cedar]',
  help: ['Exit code 1 when any case fails. Case format: docs/roles-and-policies.md; example: docs/examples/tenant-policies.test.json.'],
  options: { policies: { type: 'string' } },
  async run({ args, flags, out }) {
    const [file] = positionals(args, ['CASES.json'], test.usage) as [string];
    // Loaded here, not at start: compiling Cedar's WebAssembly costs every other command ~100 ms.
    const { createPolicyEngine } = await import('../../modules/policy/engine.ts');
    const { parsePolicyTestCases, parsePolicyTestTenant, runPolicyTests } = await import('../../modules/policy/policy-test-runner.ts');
    let cases;
    let tenant;
    try {
      const json = parseUserJson(await readText(file, 'test file'), `test file ${file}`);
      cases = parsePolicyTestCases(json);
      tenant = parsePolicyTestTenant(json);
    } catch (err) {
      if (err instanceof UsageError) throw err;
      throw new UsageError(`${file}: ${(err as Error).message}`);
    }
    const policiesFile = str(flags, 'policies');
    const text = policiesFile ? await readText(policiesFile, 'policy file') : '';
    let results;
    try {
      results = runPolicyTests(createPolicyEngine(), text, cases, tenant);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const failed = results.filter((r) => !r.pass).length;
    out.result({ results, passed: results.length - failed, failed }, () => [
      ...results.map((r) => `${r.pass ? 'ok  ' : r.error !== undefined ? 'ERR ' : 'FAIL'}  ${r.name}${r.pass ? ''
        : r.error !== undefined ? `  (the case is wrong: ${r.error})` : `  (expected ${r.expected}, got ${r.actual}; ${r.reasons.join(', ') || 'no policy matched'})`}`),
      `${results.length - failed} passed, ${failed} failed`,
    ].join('\n'));
    return failed === 0 ? 0 : 1;
  },
};

export const policyGroup: Group = { name: 'policy', summary: 'Tenant Cedar policies (versioned), and offline policy tests', commands: [show, history, apply, validate, diff, rollback, test] };
