import { isIP } from 'node:net';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { ESCROW_ACTIONS } from '../escrow/actions.ts';
import { CLASSIFICATIONS } from '../secrets/types.ts';
import { ACTIONS, isRole, SECRET_ACTIONS, type Action } from './actions.ts';
import type { DecisionRequest, PolicyEngine } from './engine.ts';

/** One expected decision in a tenant's policy test file. Omitted context fields take safe defaults. */
export interface PolicyTestCase {
  name: string;
  principal: { type: 'user' | 'machine'; id?: string; name?: string };
  action: Action;
  /**
   * A secret's metadata, or omitted for tenant-level actions. `id` is its entity id, as the server
   * has it (the secret's id, never its name); omitted, it is one no real secret has.
   */
  secret?: { name: string; id?: string; classification?: string; owner?: string; tags?: string[] };
  environment?: string;
  roles?: string[];
  mfaFresh?: boolean;
  mfaAgeSeconds?: number;
  hour?: number;
  weekday?: number;
  sourceIp?: string;
  /** Escrow context (docs/escrow.md); false when omitted. */
  approvalRequired?: boolean;
  viaRequest?: boolean;
  approvedRequest?: boolean;
  expect: 'allow' | 'deny';
}

export interface PolicyTestResult {
  name: string;
  expected: 'allow' | 'deny';
  /** 'error': the case itself is wrong (unknown role, a field of the wrong type) or Cedar could not evaluate it; never a pass. */
  actual: 'allow' | 'deny' | 'error';
  reasons: string[];
  pass: boolean;
  /** What is wrong with the case, when actual is 'error'. */
  error?: string;
}

const isString = (v: unknown) => typeof v === 'string';
const isBool = (v: unknown) => typeof v === 'boolean';
const isIntIn = (lo: number, hi: number) => (v: unknown) => Number.isInteger(v) && (v as number) >= lo && (v as number) <= hi;
const isIp = (v: unknown) => typeof v === 'string' && isIP(v.replace(/^::ffff:/, '')) !== 0;

/** The optional fields of a case and what each must be, as the schema's context would type them. */
const FIELD_CHECKS: [string, (tc: PolicyTestCase) => unknown, (v: unknown) => boolean, string][] = [
  ['principal.id', (tc) => tc.principal.id, isString, 'a string'],
  ['principal.name', (tc) => tc.principal.name, isString, 'a string'],
  ['secret.name', (tc) => tc.secret?.name, isString, 'a string'],
  ['secret.id', (tc) => tc.secret?.id, isString, 'a string'],
  // A secret's classification is one of four (the server refuses any other): a typo would test a request that never happens.
  ['secret.classification', (tc) => tc.secret?.classification, (v) => (CLASSIFICATIONS as readonly unknown[]).includes(v), `one of ${CLASSIFICATIONS.join(', ')}`],
  ['secret.owner', (tc) => tc.secret?.owner, isString, 'a string'],
  ['secret.tags', (tc) => tc.secret?.tags, (v) => Array.isArray(v) && v.every(isString), 'an array of strings'],
  ['environment', (tc) => tc.environment, isString, 'a string'],
  ['roles', (tc) => tc.roles, (v) => Array.isArray(v) && v.every(isString), 'an array of role names'],
  ['mfaFresh', (tc) => tc.mfaFresh, isBool, 'true or false'],
  ['mfaAgeSeconds', (tc) => tc.mfaAgeSeconds, isIntIn(-1, Number.MAX_SAFE_INTEGER), 'a whole number of seconds (-1: none)'],
  ['hour', (tc) => tc.hour, isIntIn(0, 23), 'a whole number 0-23'],
  ['weekday', (tc) => tc.weekday, isIntIn(0, 6), 'a whole number 0 (Sunday) - 6'],
  ['sourceIp', (tc) => tc.sourceIp, isIp, 'an IP address'],
  ['approvalRequired', (tc) => tc.approvalRequired, isBool, 'true or false'],
  ['viaRequest', (tc) => tc.viaRequest, isBool, 'true or false'],
  ['approvedRequest', (tc) => tc.approvedRequest, isBool, 'true or false'],
];

/** What is wrong with a case's fields, if anything: a wrong type would make Cedar fail, which must not read as "deny". */
function caseProblem(tc: PolicyTestCase): string | null {
  if (tc.secret !== undefined && (typeof tc.secret !== 'object' || tc.secret === null)) return '"secret" must be an object';
  for (const [field, get, ok, what] of FIELD_CHECKS) {
    const value = get(tc);
    if (value !== undefined && !ok(value)) return `${field} must be ${what}, not ${JSON.stringify(value)}`;
  }
  const unknown = (tc.roles ?? []).filter((r) => !isRole(r));
  if (unknown.length > 0) return `unknown role${unknown.length > 1 ? 's' : ''} ${unknown.map((r) => `"${r}"`).join(', ')}`;
  return impossibleContext(tc);
}

/**
 * A context the server never builds (cedar-authorizer.ts): a case evaluated on it could pass for a
 * request that cannot happen, and vouch for a policy that never fires.
 */
function impossibleContext(tc: PolicyTestCase): string | null {
  if (tc.principal.type === 'machine' && (tc.mfaFresh === true || (tc.mfaAgeSeconds ?? -1) !== -1)) {
    return 'machines have no second factor: for them mfaFresh is always false and mfaAgeSeconds -1';
  }
  if (tc.mfaFresh === true && tc.mfaAgeSeconds === -1) return 'mfaFresh true needs a second factor: mfaAgeSeconds cannot be -1';
  const escrow = tc.approvalRequired === true || tc.viaRequest === true || tc.approvedRequest === true;
  if (escrow && (!(ESCROW_ACTIONS as readonly string[]).includes(tc.action) || !tc.secret || tc.environment === undefined)) {
    return `escrow fields are set only for ${ESCROW_ACTIONS.join(', ')} of a secret in an environment`;
  }
  return null;
}

const TEST_TENANT = 'policy-test-tenant';
/** Prefix of a case's secret entity id when it names none: no real secret id (a UUID) has it. */
const TEST_SECRET_ID = 'policy-test-secret:';

/** The tenant a test file's cases are decided in (`"tenant"`: the tenant's id), if it names one. */
export function parsePolicyTestTenant(json: unknown): string | undefined {
  const tenant = (json as { tenant?: unknown })?.tenant;
  if (tenant === undefined) return undefined;
  if (typeof tenant !== 'string' || tenant.length === 0 || tenant.length > 128) throw new Error('"tenant" must be your tenant\'s id (1-128 characters), as policies name it in Keyhold::Tenant::"…"');
  return tenant;
}

/** The ids of the `Keyhold::Tenant` entities a policy set names, read from Cedar's own form of each policy. */
function namedTenants(policies: Record<string, string>): string[] {
  const found = new Set<string>();
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (typeof node === 'object' && node !== null) {
      const o = node as Record<string, unknown>;
      if (o['type'] === 'Keyhold::Tenant' && typeof o['id'] === 'string') found.add(o['id']);
      Object.values(o).forEach(walk);
    }
  };
  for (const text of Object.values(policies)) {
    const json = cedar.policyToJson(text);
    if (json.type === 'success') walk(json.json);
  }
  return [...found];
}

/** Parses and checks a test file's cases; a malformed case is an error naming it, not a silent skip. */
export function parsePolicyTestCases(json: unknown): PolicyTestCase[] {
  const cases = (json as { cases?: unknown })?.cases;
  if (!Array.isArray(cases) || cases.length === 0) throw new Error('the test file needs a non-empty "cases" array');
  return cases.map((c, i) => {
    const tc = c as PolicyTestCase;
    const where = `case ${i + 1}${typeof tc?.name === 'string' ? ` ("${tc.name}")` : ''}`;
    if (typeof tc?.name !== 'string') throw new Error(`${where}: "name" is required`);
    if (!tc.principal || !['user', 'machine'].includes(tc.principal.type)) throw new Error(`${where}: principal.type must be user or machine`);
    if (!(ACTIONS as readonly string[]).includes(tc.action)) throw new Error(`${where}: unknown action "${String(tc.action)}"`);
    if (tc.expect !== 'allow' && tc.expect !== 'deny') throw new Error(`${where}: expect must be "allow" or "deny"`);
    if (SECRET_ACTIONS.includes(tc.action) && !tc.secret) throw new Error(`${where}: action ${tc.action} needs a "secret"`);
    // The server decides tenant-level actions on the tenant, with environment and classification "".
    for (const field of ['secret', 'environment'] as const) {
      if (!SECRET_ACTIONS.includes(tc.action) && tc[field] !== undefined) throw new Error(`${where}: ${tc.action} is decided on the tenant: it takes no "${field}"`);
    }
    return tc;
  });
}

/**
 * Evaluates expected decisions against the built-in policies plus a tenant policy file, exactly as
 * the server would decide them. Tenants run this in their own CI (`keyhold policy test`).
 */
export function runPolicyTests(engine: PolicyEngine, tenantPolicyText: string, cases: PolicyTestCase[], tenantId?: string): PolicyTestResult[] {
  const checked = engine.validate(tenantPolicyText);
  if (!checked.ok) throw new Error(`the policy file does not validate: ${checked.errors.join('; ')}`);
  // `principal in Keyhold::Tenant::"<id>"` holds on the server exactly when <id> is the tenant: decided in a
  // tenant of the runner's own, a permit naming it would never fire, and a case expecting deny would pass.
  const named = tenantId === undefined ? namedTenants(checked.policies) : [];
  if (named.length > 0) throw new Error(`the policy file names the tenant ${named.map((t) => JSON.stringify(t)).join(', ')}: give your tenant's id as "tenant" in the test file, so cases are decided in it as on the server`);
  const tenant = tenantId ?? TEST_TENANT;
  // A generation no earlier run on this engine used: decisions are cached by it, so a clock reading
  // (two runs in one millisecond) would answer this file's cases from the previous file's decisions.
  engine.install(tenant, (engine.installedGeneration(tenant) ?? 0) + 1, checked.policies);
  return cases.map((tc): PolicyTestResult => {
    const problem = caseProblem(tc);
    if (problem !== null) return { name: tc.name, expected: tc.expect, actual: 'error', reasons: [], pass: false, error: problem };
    const request: DecisionRequest = {
      tenantId: tenant,
      principal: { type: tc.principal.type, id: tc.principal.id ?? 'p', name: tc.principal.name ?? 'p', tenantId: tenant },
      action: tc.action,
      resource: tc.secret
        // Never the name: the server's entity is the secret's id, so a policy naming `Keyhold::Secret::"NAME"` never fires there.
        ? { type: 'secret', id: tc.secret.id ?? `${TEST_SECRET_ID}${tc.secret.name}`, name: tc.secret.name, classification: tc.secret.classification ?? 'internal', owner: tc.secret.owner ?? '', tags: tc.secret.tags ?? [] }
        : { type: 'tenant' },
      context: {
        environment: tc.environment ?? '',
        classification: tc.secret?.classification ?? (tc.secret ? 'internal' : ''),
        identityType: tc.principal.type,
        roles: [...(tc.roles ?? [])].sort(),
        mfaFresh: tc.mfaFresh ?? false,
        mfaAgeSeconds: tc.mfaAgeSeconds ?? (tc.mfaFresh ? 0 : -1),
        hour: tc.hour ?? 12,
        weekday: tc.weekday ?? 2,
        sourceIp: tc.sourceIp ?? '127.0.0.1',
        approvalRequired: tc.approvalRequired ?? false,
        viaRequest: tc.viaRequest ?? false,
        approvedRequest: tc.approvedRequest ?? false,
      },
    };
    const decision = engine.decide(request);
    if (decision.reasons.includes('error')) {
      return { name: tc.name, expected: tc.expect, actual: 'error', reasons: [], pass: false, error: 'Cedar could not evaluate this request' };
    }
    const actual = decision.allowed ? 'allow' : 'deny';
    return { name: tc.name, expected: tc.expect, actual, reasons: decision.reasons, pass: actual === tc.expect };
  });
}
