import { Type, type Static } from 'typebox';
import { Value } from 'typebox/value';
import { matchesPattern, NAME_PATTERN } from '../grants/matching.ts';

import { ESCROW_ACTIONS, type EscrowAction } from './actions.ts';

export { ESCROW_ACTIONS, type EscrowAction };

export const DEFAULT_MAX_DURATION_SECONDS = 8 * 3600;
export const DEFAULT_REQUEST_EXPIRY_SECONDS = 24 * 3600;
export const DEFAULT_BREAK_GLASS_SECONDS = 3600;
/** Nothing an access policy grants lives longer than this, break-glass much less. */
export const MAX_GRANT_SECONDS = 90 * 24 * 3600;
export const MAX_BREAK_GLASS_SECONDS = 4 * 3600;

const Slug = Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z][a-z0-9-]*$' });
const Username = Type.String({ minLength: 1, maxLength: 128 });

const StepSchema = Type.Object({
  groups: Type.Array(Slug, { minItems: 1, maxItems: 8 }),
  approvals: Type.Integer({ minimum: 1, maximum: 10 }),
}, { additionalProperties: false });

const RuleSchema = Type.Object({
  id: Slug,
  description: Type.Optional(Type.String({ maxLength: 500 })),
  secrets: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { minItems: 1, maxItems: 32 })),
  classifications: Type.Optional(Type.Array(Type.Union([Type.Literal('public'), Type.Literal('internal'), Type.Literal('confidential'), Type.Literal('restricted')]), { minItems: 1 })),
  environments: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 63 }), { minItems: 1, maxItems: 32 })),
  actions: Type.Array(Type.Union([Type.Literal('reveal'), Type.Literal('rotate'), Type.Literal('write'), Type.Literal('use')]), { minItems: 1 }),
  steps: Type.Array(StepSchema, { minItems: 1, maxItems: 5 }),
  maxDurationSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_GRANT_SECONDS })),
  requestExpirySeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 30 * 24 * 3600 })),
  breakGlass: Type.Optional(Type.Object({
    users: Type.Array(Username, { minItems: 1, maxItems: 100 }),
    durationSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: MAX_BREAK_GLASS_SECONDS })),
  }, { additionalProperties: false })),
}, { additionalProperties: false });

/** A tenant's access policy: named approver groups (sets of usernames) and approval rules, first match wins. */
export const AccessPolicySchema = Type.Object({
  groups: Type.Record(Type.String({ pattern: '^[a-z][a-z0-9-]{0,63}$' }), Type.Array(Username, { minItems: 1, maxItems: 200 })),
  rules: Type.Array(RuleSchema, { maxItems: 200 }),
}, { additionalProperties: false });

export type AccessPolicyDocument = Static<typeof AccessPolicySchema>;
export type AccessRule = Static<typeof RuleSchema>;

/** A rule as a request carries it: defaults filled in, fixed when the request is filed. */
export interface ResolvedRule {
  id: string;
  steps: Array<{ groups: string[]; approvals: number }>;
  maxDurationMs: number;
  requestExpiryMs: number;
  breakGlass: { users: string[]; durationMs: number } | null;
}

export const EMPTY_POLICY: AccessPolicyDocument = { groups: {}, rules: [] };

/**
 * Checks a document's shape and meaning: every group a step names exists, every pattern is a
 * name pattern, rule ids are unique, and every rule can be satisfied, since one person counts
 * once per request: a rule's steps need at least as many distinct people as approvals in total.
 */
export function checkAccessPolicy(doc: unknown): { ok: true; doc: AccessPolicyDocument } | { ok: false; errors: string[] } {
  if (!Value.Check(AccessPolicySchema, doc)) {
    const errors = [...Value.Errors(AccessPolicySchema, doc)].filter((e) => e.keyword !== 'boolean')
      .slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message}`);
    return { ok: false, errors };
  }
  const errors: string[] = [];
  const ids = new Set<string>();
  for (const rule of doc.rules) {
    if (ids.has(rule.id)) errors.push(`rule "${rule.id}" is defined twice`);
    // Break-glass skips the approvals, never the rule's bound on how long access lasts.
    const maxSeconds = rule.maxDurationSeconds ?? DEFAULT_MAX_DURATION_SECONDS;
    if ((rule.breakGlass?.durationSeconds ?? 0) > maxSeconds) errors.push(`rule "${rule.id}": break-glass lasts ${rule.breakGlass!.durationSeconds} s, longer than the rule's maximum of ${maxSeconds} s`);
    ids.add(rule.id);
    for (const p of rule.secrets ?? []) if (!NAME_PATTERN.test(p)) errors.push(`rule "${rule.id}": bad secret pattern "${p}" (letters, digits, _ . - and *)`);
    const people = new Set<string>();
    let needed = 0;
    for (const [i, step] of rule.steps.entries()) {
      const members = new Set<string>();
      for (const g of step.groups) {
        const group = groupOf(doc, g);
        if (!group) errors.push(`rule "${rule.id}" step ${i + 1}: no group "${g}"`);
        else for (const m of group) members.add(m);
      }
      if (members.size > 0 && members.size < step.approvals) errors.push(`rule "${rule.id}" step ${i + 1}: needs ${step.approvals} approvals but its groups have ${members.size} people`);
      for (const m of members) people.add(m);
      needed += step.approvals;
    }
    if (people.size > 0 && people.size < needed) errors.push(`rule "${rule.id}": its steps need ${needed} distinct approvers but their groups have ${people.size} people`);
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, doc };
}

/** A group the document defines, or undefined: never a property every object inherits ("constructor"). */
function groupOf(doc: AccessPolicyDocument, name: string): string[] | undefined {
  return Object.hasOwn(doc.groups, name) ? doc.groups[name] : undefined;
}

/** Every username a document names (group members and break-glass users), to check they exist. */
export function usernamesIn(doc: AccessPolicyDocument): string[] {
  const names = new Set<string>();
  for (const members of Object.values(doc.groups)) for (const m of members) names.add(m);
  for (const rule of doc.rules) for (const u of rule.breakGlass?.users ?? []) names.add(u);
  return [...names].sort();
}

/** Every environment a document names, to check they exist. */
export function environmentsIn(doc: AccessPolicyDocument): string[] {
  return [...new Set(doc.rules.flatMap((r) => r.environments ?? []))].sort();
}

/** The first rule that puts this action on this secret in this environment behind approval, or null. */
export function matchRule(doc: AccessPolicyDocument, target: { action: string; secretName: string; classification: string; environment: string }): AccessRule | null {
  for (const rule of doc.rules) {
    if (!(rule.actions as string[]).includes(target.action)) continue;
    if (rule.environments && !rule.environments.includes(target.environment)) continue;
    if (rule.classifications && !(rule.classifications as string[]).includes(target.classification)) continue;
    if (rule.secrets && !rule.secrets.some((p) => matchesPattern(p, target.secretName))) continue;
    return rule;
  }
  return null;
}

/** Fills in a rule's defaults; what a request records as the rule it was filed under. */
export function resolveRule(rule: AccessRule): ResolvedRule {
  const maxDurationMs = (rule.maxDurationSeconds ?? DEFAULT_MAX_DURATION_SECONDS) * 1000;
  return {
    id: rule.id,
    steps: rule.steps.map((s) => ({ groups: [...s.groups], approvals: s.approvals })),
    maxDurationMs,
    requestExpiryMs: (rule.requestExpirySeconds ?? DEFAULT_REQUEST_EXPIRY_SECONDS) * 1000,
    // The default hour is cut to a shorter maximum (a longer explicit one is refused when the policy is applied).
    breakGlass: rule.breakGlass ? { users: [...rule.breakGlass.users], durationMs: Math.min((rule.breakGlass.durationSeconds ?? DEFAULT_BREAK_GLASS_SECONDS) * 1000, maxDurationMs) } : null,
  };
}

/** The usernames in any of these groups of the document in force (a group removed since counts as empty). */
export function membersOf(doc: AccessPolicyDocument, groups: readonly string[]): Set<string> {
  const members = new Set<string>();
  for (const g of groups) for (const m of groupOf(doc, g) ?? []) members.add(m);
  return members;
}
