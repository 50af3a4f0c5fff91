import { readFileSync } from 'node:fs';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import type { Action } from './actions.ts';
import { complexityErrors, MAX_POLICY_BYTES } from './complexity.ts';

const SCHEMA_TEXT = readFileSync(new URL('./schema.cedarschema', import.meta.url), 'utf8');
const BUILTIN_TEXT = readFileSync(new URL('./builtin.cedar', import.meta.url), 'utf8');
const SCHEMA_NAME = 'keyhold-v1';
const NS = 'Keyhold';

export interface DecisionRequest {
  /** The tenant the request acts in (the resource's tenant). */
  tenantId: string;
  /** `tenantId` here is the principal's own tenant, which may differ from the request's. */
  principal: { type: 'user' | 'machine' | 'root'; id: string; name: string; tenantId: string };
  action: Action;
  resource: { type: 'secret'; id: string; name: string; classification: string; owner: string; tags: string[] } | { type: 'tenant' };
  context: {
    environment: string;
    classification: string;
    identityType: 'user' | 'machine' | 'root';
    roles: string[];
    mfaFresh: boolean;
    mfaAgeSeconds: number;
    hour: number;
    weekday: number;
    sourceIp: string;
    /** Escrow (modules/escrow/escrow-authz.ts); false when omitted. */
    approvalRequired?: boolean;
    viaRequest?: boolean;
    approvedRequest?: boolean;
  };
}

/** Escrow's context fields for callers that know nothing of escrow (policy tests, benchmarks). */
const NO_ESCROW = { approvalRequired: false, viaRequest: false, approvedRequest: false };

export interface Decision {
  allowed: boolean;
  /** Ids of the policies that determined the decision (permits when allowed, forbids when denied). */
  reasons: string[];
}

export type ValidationResult = { ok: true; policies: Record<string, string> } | { ok: false; errors: string[] };

/** Longest `@id` a tenant may give a policy; ids appear in decisions and audit events. */
const MAX_POLICY_ID_LENGTH = 100;
/**
 * What an `@id` may not hold: a comma (a denial's audit event lists the deciding ids comma-separated, so
 * "mine,builtin:step-up" would read as a built-in refusal), control characters and invisible format
 * characters (a line break or a direction override redraws what a reader of the trail sees).
 */
const MISLEADING_ID = /[,\p{Cc}\p{Cf}\u2028\u2029]/u;

/**
 * Splits a policy file into id → text. Ids come from `@id("...")` annotations (read by Cedar's own
 * parser, not a pattern over the text), else `#<n>` by position; explicit ids may not start with
 * `#`, so the two never collide. A repeated id is an error: a record keyed by id would otherwise
 * keep only the last of them, while the stored text shows both. `stored`: a set saved before these
 * rules existed is loaded whole instead (a clashing id gets a `~<n>` suffix), so none of its
 * policies, forbids included, is dropped and the tenant is not locked out by a 500.
 */
export function splitPolicies(text: string, idPrefix: string, mode: 'new' | 'stored' = 'new'): { ok: true; policies: Record<string, string> } | { ok: false; errors: string[] } {
  // Before Cedar parses anything: a text too deep or too long for it would break the process's one Cedar instance.
  const shape = complexityErrors(text);
  if (shape.length > 0) return { ok: false, errors: shape };
  const parts = cedar.policySetTextToParts(text);
  if (parts.type === 'failure') return { ok: false, errors: parts.errors.map((e) => e.message) };
  // Templates only act once linked, and nothing links them: stored as active, they would never apply.
  if (parts.policy_templates.length > 0) return { ok: false, errors: ['policy templates (?principal, ?resource) are not supported: write the principal or resource out'] };
  const policies: Record<string, string> = {};
  const errors: string[] = [];
  parts.policies.forEach((policy, i) => {
    const json = cedar.policyToJson(policy);
    if (json.type === 'failure') {
      errors.push(`policy ${i + 1}: ${json.errors.map((e) => e.message).join('; ')}`);
      return;
    }
    const explicit = json.json.annotations?.['id'];
    if (mode === 'new' && explicit !== undefined && (explicit === null || explicit.length === 0 || explicit.length > MAX_POLICY_ID_LENGTH || explicit.startsWith('#') || MISLEADING_ID.test(explicit))) {
      errors.push(`policy ${i + 1}: @id must be 1-${MAX_POLICY_ID_LENGTH} characters, hold no comma, control or invisible character, and not start with "#" (reserved for unnamed policies)`);
      return;
    }
    let id = `${idPrefix}${explicit ?? `#${i + 1}`}`;
    if (Object.hasOwn(policies, id)) {
      if (mode === 'new') {
        errors.push(`policy ${i + 1}: duplicate @id("${explicit}"): every policy id must be unique`);
        return;
      }
      // A suffix that is itself taken (an explicit "a~3") gets another, never an overwrite.
      const base = id;
      for (let n = i + 1; Object.hasOwn(policies, id); n++) id = `${base}~${n}`;
    }
    policies[id] = policy;
  });
  return errors.length > 0 ? { ok: false, errors } : { ok: true, policies };
}

function validateSet(policies: Record<string, string>): string[] {
  const answer = cedar.validate({ schema: SCHEMA_TEXT, policies: { staticPolicies: policies }, validationSettings: { mode: 'strict' } });
  if (answer.type === 'failure') return answer.errors.map((e) => e.message);
  return answer.validationErrors.map((e) => `${e.policyId}: ${e.error.message}`);
}

/**
 * The built-in policies, checked against the schema and loaded, with the schema, into Cedar's store
 * once per process: the store is the process's one wasm instance, shared by every engine in it, and
 * neither text changes while it runs. A server builds one engine; a test process, one per harness or node.
 */
const BUILTIN = (() => {
  const split = splitPolicies(BUILTIN_TEXT, '');
  if (!split.ok) throw new Error(`built-in policies do not parse: ${split.errors.join('; ')}`);
  const schemaCheck = cedar.preparseSchema(SCHEMA_NAME, SCHEMA_TEXT);
  if (schemaCheck.type === 'failure') throw new Error(`Cedar schema does not parse: ${schemaCheck.errors.map((e) => e.message).join('; ')}`);
  const builtinCheck = cedar.preparsePolicySet('builtin', { staticPolicies: split.policies });
  if (builtinCheck.type === 'failure') throw new Error('built-in policies do not parse');
  const validation = validateSet(split.policies);
  if (validation.length > 0) throw new Error(`built-in policies do not validate: ${validation.join('; ')}`);
  return split.policies;
})();

/** The built-in policies alone: for tenants without policies of their own, and for root everywhere. */
const BUILTIN_SET = Object.freeze({ setId: 'builtin', generation: -1 });

/** Normalises an address for Cedar's ip(): IPv4-mapped IPv6 becomes plain IPv4; junk becomes 0.0.0.0. */
export function cedarIp(address: string | undefined): string {
  const a = (address ?? '').replace(/^::ffff:/, '');
  return /^[0-9a-fA-F:.]{2,45}$/.test(a) ? a : '0.0.0.0';
}

/**
 * Cedar, with the schema and each tenant's policy set pre-parsed once, and a decision cache. The
 * cache key holds every input of a decision (principal, action, resource with its metadata,
 * context, and the tenant's policy generation), so a change of grants, identity or policy, which
 * bumps the generation, can never be answered from a stale entry.
 */
export function createPolicyEngine(opts: { cacheSize?: number } = {}) {
  const cacheSize = opts.cacheSize ?? 50_000;
  const cache = new Map<string, Decision>();
  /** tenant id → { set id in the wasm store, generation } */
  const sets = new Map<string, { setId: string; generation: number }>();

  function uid(type: string, id: string) {
    return { type: `${NS}::${type}`, id };
  }

  function entities(req: DecisionRequest) {
    const tenant = uid('Tenant', req.tenantId);
    const home = uid('Tenant', req.principal.tenantId);
    const list: cedar.EntityJson[] = [{ uid: tenant, attrs: {}, parents: [] }];
    if (req.principal.tenantId !== req.tenantId) list.push({ uid: home, attrs: {}, parents: [] });
    if (req.principal.type === 'root') {
      list.push({ uid: uid('Root', req.principal.id), attrs: {}, parents: [] });
    } else {
      const type = req.principal.type === 'user' ? 'User' : 'Machine';
      list.push({ uid: uid(type, req.principal.id), attrs: { tenant: { __entity: home }, name: req.principal.name }, parents: [home] });
    }
    if (req.resource.type === 'secret') {
      const r = req.resource;
      list.push({ uid: uid('Secret', r.id), attrs: { name: r.name, classification: r.classification, owner: r.owner, tags: r.tags }, parents: [tenant] });
    }
    return list;
  }

  /**
   * One Cedar evaluation; every failure is a deny. Cedar skips a policy whose evaluation errors (an
   * overflow, a missing attribute) and decides without it: a tenant's forbid that errors would let
   * the request through, so any erroring policy turns the answer into a deny naming it.
   */
  function evaluate(req: DecisionRequest, setId: string): Decision {
    const r = req.resource;
    let answer: ReturnType<typeof cedar.statefulIsAuthorized>;
    try {
      answer = cedar.statefulIsAuthorized({
        principal: principalUid(req),
        action: uid('Action', req.action),
        resource: r.type === 'secret' ? uid('Secret', r.id) : uid('Tenant', req.tenantId),
        context: { ...NO_ESCROW, ...req.context, sourceIp: { __extn: { fn: 'ip', arg: cedarIp(req.context.sourceIp) } } },
        preparsedSchemaName: SCHEMA_NAME,
        preparsedPolicySetId: setId,
        entities: entities(req),
      });
    } catch {
      return { allowed: false, reasons: ['error'] };
    }
    if (answer.type === 'failure') return { allowed: false, reasons: ['error'] };
    const { decision, diagnostics } = answer.response;
    if (diagnostics.errors.length > 0) return { allowed: false, reasons: diagnostics.errors.map((e) => `error:${e.policyId}`) };
    return { allowed: decision === 'allow', reasons: diagnostics.reason };
  }

  function principalUid(req: DecisionRequest) {
    return uid(req.principal.type === 'root' ? 'Root' : req.principal.type === 'user' ? 'User' : 'Machine', req.principal.id);
  }

  return {
    /** Checks a tenant policy file: it must parse and type-check against the schema, beside the built-ins. */
    validate(text: string, mode: 'new' | 'stored' = 'new'): ValidationResult {
      // Here, not only where a version is applied: the dry run and `keyhold policy test` must refuse what apply would.
      if (mode === 'new' && Buffer.byteLength(text) > MAX_POLICY_BYTES) return { ok: false, errors: [`policy files are at most ${MAX_POLICY_BYTES} bytes`] };
      if (text.trim() === '') return { ok: true, policies: {} };
      const split = splitPolicies(text, 'tenant:', mode);
      if (!split.ok) return split;
      const errors = validateSet(split.policies);
      return errors.length > 0 ? { ok: false, errors } : split;
    },

    /** Installs a tenant's (already validated) policies at a generation; an empty set means built-ins only. */
    install(tenantId: string, generation: number, tenantPolicies: Record<string, string>): void {
      let setId = 'builtin';
      if (Object.keys(tenantPolicies).length > 0) {
        setId = `tenant:${tenantId}`;
        const res = cedar.preparsePolicySet(setId, { staticPolicies: { ...BUILTIN, ...tenantPolicies } });
        if (res.type === 'failure') throw new Error(`tenant policies failed to load: ${res.errors.map((e) => e.message).join('; ')}`);
      }
      sets.set(tenantId, { setId, generation });
    },

    installedGeneration(tenantId: string): number | null {
      return sets.get(tenantId)?.generation ?? null;
    },

    /** Decides one request. Default deny; a forbid wins. Cached by every input. */
    decide(req: DecisionRequest): Decision {
      // Root (and the server's own work) is the recovery credential: the built-ins alone decide for
      // it, so no tenant policy can lock out the one principal able to repair that policy.
      const set = (req.principal.type === 'root' ? undefined : sets.get(req.tenantId)) ?? BUILTIN_SET;
      const r = req.resource;
      const p = req.principal;
      // One JSON array: every part is quoted and escaped, so no tag with a comma, owner with a colon
      // or name with a separator can make two different requests share a key.
      const key = JSON.stringify([set.setId, set.generation, req.tenantId, p.type, p.id, p.name, p.tenantId, req.action,
        r.type === 'secret' ? [r.id, r.name, r.classification, r.owner, r.tags] : null, req.context]);
      const hit = cache.get(key);
      if (hit) return hit;
      const decision = evaluate(req, set.setId);
      if (cache.size >= cacheSize) cache.delete(cache.keys().next().value!);
      cache.set(key, decision);
      return decision;
    },

    /** Drops cached decisions (e.g. when the cache must shrink); correctness never depends on it. */
    clearCache(): void {
      cache.clear();
    },

    cacheSize: () => cache.size,
  };
}

export type PolicyEngine = ReturnType<typeof createPolicyEngine>;
export { SCHEMA_TEXT, BUILTIN_TEXT };
