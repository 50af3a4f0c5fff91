import { positionals } from '../args.ts';
import type { Command, Group } from '../command.ts';
import { table, time } from '../output.ts';

/** The `keys` group: the tenant's key-encryption keys (KEKs). */

interface KeyStatus {
  currentVersion: number;
  minDecryptionVersion: number;
  rewrapped?: number;
  resealed?: number;
  versions: Array<{ version: number; createdAt: string; retiredAt: string | null; dataKeys: number }>;
}

function describeKeys(k: KeyStatus): string {
  return [
    `Current key version: ${k.currentVersion}; minimum decryption version: ${k.minDecryptionVersion}`,
    table(['VERSION', 'CREATED', 'RETIRED', 'DATA KEYS'], k.versions.map((v) => [v.version, time(v.createdAt), time(v.retiredAt), v.dataKeys])),
  ].join('\n');
}

function keyCommand(name: string, summary: string, method: 'GET' | 'POST', path: string, lead: (k: KeyStatus) => string | null): Command {
  const command: Command = {
    name,
    summary,
    usage: `keys ${name}`,
    options: {},
    async run({ args, api, out }) {
      positionals(args, [], command.usage);
      const res = await api.call<KeyStatus>(method, path);
      out.result(res, () => [lead(res), describeKeys(res)].filter((l) => l !== null).join('\n'));
    },
  };
  return command;
}

interface SelfTestReport {
  at: string;
  ok: boolean;
  tenants: number;
  keys: number;
  failures: Array<{ tenantId: string; version: number; reason: string }>;
}

function describeSelfTest(r: SelfTestReport): string {
  const lead = `${r.ok ? 'Passed' : 'FAILED'} at ${time(r.at)}: ${r.keys} key version(s) of ${r.tenants} tenant(s) tested, ${r.failures.length} failed.`;
  if (r.ok) return lead;
  return [lead, 'These would not open their values after a restart; see docs/operations.md, "Keys".',
    table(['TENANT', 'VERSION', 'REASON'], r.failures.map((f) => [f.tenantId, f.version, f.reason]))].join('\n');
}

/** Root only: every tenant's usable KEKs, unwrapped afresh, must open a canary. Exit code 1 when any fails. */
const selfTest: Command = {
  name: 'self-test',
  summary: 'Test every tenant key now (root): exit code 1 if any would not open values; --last shows the last run',
  usage: 'keys self-test [--last]',
  options: { last: { type: 'boolean' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], selfTest.usage);
    if (flags.last === true) {
      const { last } = await api.call<{ last: SelfTestReport | null }>('GET', '/v1/sys/self-test');
      out.result({ last }, () => (last === null ? 'No self-test has run on this server since it started.' : describeSelfTest(last)));
      return last === null || last.ok ? 0 : 1;
    }
    const report = await api.call<SelfTestReport>('POST', '/v1/sys/self-test');
    out.result(report, () => describeSelfTest(report));
    return report.ok ? 0 : 1;
  },
};

const stale = (k: KeyStatus) => k.versions.filter((v) => v.version < k.currentVersion).reduce((n, v) => n + v.dataKeys, 0);

export const keysGroup: Group = {
  name: 'keys',
  summary: "The tenant's key-encryption keys: status, rotate, rewrap, reencrypt, self-test",
  commands: [
    keyCommand('status', 'Show key versions and how many data keys each wraps', 'GET', '/v1/keys', () => null),
    keyCommand('rotate', 'Create a new key version for new data keys', 'POST', '/v1/keys/rotate', (k) => (
      `Rotated: new data keys are wrapped under version ${k.currentVersion}.` +
      (stale(k) > 0 ? ` ${stale(k)} data key(s) are still under older versions; run 'keyhold keys rewrap'.` : '')
    )),
    keyCommand('rewrap', 'Rewrap every data key under the current key version, then retire older versions', 'POST', '/v1/keys/rewrap', (k) => (
      `Rewrapped ${k.rewrapped ?? 0} data key(s) under version ${k.currentVersion}; older versions are retired.`
    )),
    keyCommand('reencrypt', 'After a suspected key compromise: a new key version, every value resealed under a fresh data key, older versions retired', 'POST', '/v1/keys/reencrypt', (k) => (
      `Resealed ${k.resealed ?? 0} value(s) under fresh data keys and key version ${k.currentVersion}; older versions are retired.`
    )),
    selfTest,
  ],
};
