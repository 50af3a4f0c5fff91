import { ACTIONS, SECRET_ACTIONS, type Action } from './actions.ts';
import type { DecisionRequest, PolicyEngine } from './engine.ts';

/** One expected decision in a tenant's policy test file. Omitted context fields take safe defaults. */
export interface PolicyTestCase {
  name: string;
  principal: { type: 'user' | 'machine'; id?: string; name?: string };
  action: Action;
  /** A secret's metadata, or omitted for tenant-level actions. */
  secret?: { name: string; classification?: string; owner?: string; tags?: string[] };
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
  actual: 'allow' | 'deny';
  reasons: string[];
  pass: boolean;
}

const TEST_TENANT = 'policy-test-tenant';

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
    return tc;
  });
}

/**
 * Evaluates expected decisions against the built-in policies plus a tenant policy file, exactly as
 * the server would decide them. Tenants run this in their own CI (`keyhold policy test`).
 */
export function runPolicyTests(engine: PolicyEngine, tenantPolicyText: string, cases: PolicyTestCase[]): PolicyTestResult[] {
  const checked = engine.validate(tenantPolicyText);
  if (!checked.ok) throw new Error(`the policy file does not validate: ${checked.errors.join('; ')}`);
  engine.install(TEST_TENANT, Date.now(), checked.policies);
  return cases.map((tc) => {
    const request: DecisionRequest = {
      tenantId: TEST_TENANT,
      principal: { type: tc.principal.type, id: tc.principal.id ?? 'p', name: tc.principal.name ?? 'p', tenantId: TEST_TENANT },
      action: tc.action,
      resource: tc.secret
        ? { type: 'secret', id: tc.secret.name, name: tc.secret.name, classification: tc.secret.classification ?? 'internal', owner: tc.secret.owner ?? '', tags: tc.secret.tags ?? [] }
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
    const actual = decision.allowed ? 'allow' : 'deny';
    return { name: tc.name, expected: tc.expect, actual, reasons: decision.reasons, pass: actual === tc.expect };
  });
}
