import { Cron } from 'croner';
import { fail } from '../../errors/index.ts';
import { referencesIn, scriptSecretNames, STEP_ID, stringsIn, type LocatedString } from './templates.ts';
import type { AutomationDefinition, Step } from './types.ts';

/** What a definition may reference, looked up once before the checks. */
export interface ReferenceCatalog {
  secrets: ReadonlySet<string>;
  connectors: ReadonlySet<string>;
  environments: ReadonlySet<string>;
  machines: ReadonlySet<string>;
}

/** A credential detector: where a literal credential appears in a text (never the text itself); `key` names the field the text is the value of. */
export type CredentialDetector = (text: string, opts?: { key?: string }) => Array<{ detector: string; index: number; length: number }>;

export const AUTOMATION_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const CONNECTOR_FIELD = /^\{\{\s*connectors\.([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}$/;
const ONLY_REFERENCES = /^(\s*\{\{[^{}]*\}\}\s*)+$/;

const where = (index: number, step: Step) => `steps[${index}] (${step.id})`;

/** How deep a step body may nest: every check and the runner walk it recursively. */
export const MAX_BODY_DEPTH = 32;

/** How deeply a JSON value nests (a scalar is 0), counted without recursion and giving up past `limit`. */
function depthOf(value: unknown, limit: number): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d + 1 > deepest) deepest = d + 1;
    if (deepest > limit) return deepest;
    for (const child of Object.values(v)) stack.push([child, d + 1]);
  }
  return deepest;
}

/**
 * The shape checks the schema cannot express, made before anything walks the definition: a body
 * nested thousands deep would overflow the stack of every recursive walk (a 500, not a 400).
 */
export function checkShape(def: AutomationDefinition): void {
  def.steps.forEach((step, index) => {
    if (step.type === 'http' && depthOf(step.body, MAX_BODY_DEPTH) > MAX_BODY_DEPTH) {
      fail('VALIDATION_FAILED', `${where(index, step)}.body nests deeper than ${MAX_BODY_DEPTH} levels`);
    }
  });
}

/** The connector name of an http step (its `connector` field is exactly one `{{ connectors.NAME }}`). */
export function connectorOf(step: { connector: string }): string | null {
  return CONNECTOR_FIELD.exec(step.connector)?.[1] ?? null;
}

/** Secret names a definition references statically (templates and literal `secrets.get('NAME')` in scripts). */
export function secretsReferenced(def: AutomationDefinition): string[] {
  const names = new Set<string>();
  def.steps.forEach((step) => {
    if (step.type === 'script') {
      for (const n of scriptSecretNames(step.source)) names.add(n);
      return;
    }
    for (const s of stringsIn({ path: step.path, query: step.query, headers: step.headers, body: step.body }, '')) {
      for (const ref of referencesIn(s.text)) if (ref.kind === 'secrets') names.add(ref.name);
    }
  });
  return [...names].sort();
}

/** Connector names a definition uses. */
export function connectorsReferenced(def: AutomationDefinition): string[] {
  return [...new Set(def.steps.flatMap((s) => (s.type === 'http' ? [connectorOf(s)].filter((n): n is string => n !== null) : [])))].sort();
}

function checkReferences(located: LocatedString, index: number, step: Step, catalog: ReferenceCatalog, earlier: Set<string>, allowSecrets: boolean): void {
  for (const ref of referencesIn(located.text)) {
    const at = `${where(index, step)}${located.field}`;
    if (ref.kind === 'invalid') fail('INVALID_REFERENCE', `${at}: ${ref.problem}`);
    if (ref.kind === 'connectors') fail('INVALID_REFERENCE', `${at}: connectors are referenced only in the step's "connector" field`);
    if (ref.kind === 'secrets') {
      if (!allowSecrets) fail('INVALID_REFERENCE', `${at}: secrets may not appear in a request path (it ends up in upstream logs); use a header, the query or the body`);
      if (!catalog.secrets.has(ref.name)) fail('INVALID_REFERENCE', `${at}: unknown secret "${ref.name}"`);
    }
    if (ref.kind === 'steps' && !earlier.has(ref.step)) fail('INVALID_REFERENCE', `${at}: "${ref.step}" is not an earlier step`);
  }
}

function checkLiteralCredentials(located: LocatedString, at: string, detect: CredentialDetector): void {
  if (ONLY_REFERENCES.test(located.text)) return;
  const found = detect(located.text, located.key === undefined ? {} : { key: located.key })[0];
  if (found) {
    fail('LITERAL_CREDENTIAL', `${at} looks like a literal credential (${found.detector}); store it as a secret and reference it as {{ secrets.NAME }}`);
  }
}

/**
 * Every check a definition must pass before it is saved: names, environments, trigger, step ids,
 * every reference resolvable, and no literal credential anywhere. Throws the first problem with
 * the step and field it is in.
 */
export function checkDefinition(def: AutomationDefinition, catalog: ReferenceCatalog, detect: CredentialDetector): void {
  if (!AUTOMATION_NAME.test(def.name)) fail('INVALID_NAME', 'automation names start with a letter and use letters, digits, _ . - (at most 64)');
  if (!catalog.machines.has(def.runAs)) fail('INVALID_REFERENCE', `runAs: no live machine identity named "${def.runAs}"`);
  const envs = new Set(def.environments);
  if (envs.size !== def.environments.length) fail('VALIDATION_FAILED', 'environments: each environment once');
  for (const env of envs) if (!catalog.environments.has(env)) fail('INVALID_REFERENCE', `environments: unknown environment "${env}"`);
  if (def.trigger.type !== 'manual') {
    if (!envs.has(def.trigger.environment)) fail('VALIDATION_FAILED', `trigger.environment "${def.trigger.environment}" is not one of the automation's environments`);
  }
  if (def.trigger.type === 'schedule') {
    try {
      new Cron(def.trigger.cron, { paused: true, timezone: 'UTC' }).stop();
    } catch {
      fail('VALIDATION_FAILED', 'trigger.cron is not a valid cron expression (minute hour day-of-month month day-of-week)');
    }
  }
  checkLiteralCredentials({ field: 'description', text: def.description ?? '' }, 'description', detect);

  const earlier = new Set<string>();
  def.steps.forEach((step, index) => {
    if (!STEP_ID.test(step.id)) fail('VALIDATION_FAILED', `steps[${index}].id must be lower-case letters, digits, _ and -, starting with a letter`);
    if (earlier.has(step.id)) fail('VALIDATION_FAILED', `steps[${index}].id "${step.id}" is used twice`);
    if (step.type === 'http') {
      const connector = connectorOf(step);
      if (!connector) fail('INVALID_REFERENCE', `${where(index, step)}.connector must be exactly {{ connectors.NAME }}`);
      if (!catalog.connectors.has(connector)) fail('INVALID_REFERENCE', `${where(index, step)}.connector: unknown connector "${connector}"`);
      if (!step.path.startsWith('/')) fail('VALIDATION_FAILED', `${where(index, step)}.path must start with / (it is relative to the connector's base URL)`);
      for (const located of stringsIn(step.path, '.path')) checkReferences(located, index, step, catalog, earlier, false);
      for (const part of ['query', 'headers', 'body'] as const) {
        for (const located of stringsIn(step[part], `.${part}`)) {
          checkReferences(located, index, step, catalog, earlier, true);
          checkLiteralCredentials(located, `${where(index, step)}${located.field}`, detect);
        }
      }
      checkLiteralCredentials({ field: '.path', text: step.path }, `${where(index, step)}.path`, detect);
    } else {
      for (const name of scriptSecretNames(step.source)) {
        if (!catalog.secrets.has(name)) fail('INVALID_REFERENCE', `${where(index, step)}.source: secrets.get("${name}") names an unknown secret`);
      }
      checkLiteralCredentials({ field: '.source', text: step.source }, `${where(index, step)}.source`, detect);
    }
    earlier.add(step.id);
  });
}
