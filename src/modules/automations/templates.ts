import { templateReferences } from '../proxy/templates.ts';
import { SECRET_NAME } from '../shared/names.ts';

/**
 * The reference language of automation definitions: `{{ secrets.NAME }}`, `{{ connectors.NAME }}`,
 * `{{ steps.ID.output.path }}` and `{{ input.path }}`. Pure functions only: parsing, collecting and
 * substituting data references. Secret references are never substituted here; the credential proxy
 * resolves them server side, so the runner never holds a value.
 */

export type Reference =
  | { kind: 'secrets'; name: string; raw: string }
  | { kind: 'connectors'; name: string; raw: string }
  | { kind: 'steps'; step: string; path: string[]; raw: string }
  | { kind: 'input'; path: string[]; raw: string };

export type ParsedReference = Reference | { kind: 'invalid'; raw: string; problem: string };

const TEMPLATE = /\{\{\s*([^{}]*?)\s*\}\}/g;
const PATH_PART = /^[A-Za-z0-9_-]{1,64}$/;
export const STEP_ID = /^[a-z][a-z0-9_-]{0,63}$/;

/** Parses the inside of one `{{ ... }}`. */
export function parseReference(inner: string, raw: string): ParsedReference {
  const [ns, ...rest] = inner.split('.');
  if (ns === 'secrets' || ns === 'connectors') {
    const name = rest.join('.');
    if (!SECRET_NAME.test(name) || name.length > 128) return { kind: 'invalid', raw, problem: `"${name.slice(0, 64)}" is not a valid ${ns === 'secrets' ? 'secret' : 'connector'} name` };
    return { kind: ns, name, raw };
  }
  if (ns === 'steps') {
    const [step, ...path] = rest;
    if (!step || !STEP_ID.test(step)) return { kind: 'invalid', raw, problem: 'a step reference is {{ steps.ID.output... }}' };
    if (path.some((p) => !PATH_PART.test(p))) return { kind: 'invalid', raw, problem: 'path parts are letters, digits, _ and -' };
    return { kind: 'steps', step, path, raw };
  }
  if (ns === 'input') {
    if (rest.some((p) => !PATH_PART.test(p))) return { kind: 'invalid', raw, problem: 'path parts are letters, digits, _ and -' };
    return { kind: 'input', path: rest, raw };
  }
  return { kind: 'invalid', raw, problem: `unknown reference "${(ns ?? '').slice(0, 32)}": use secrets., connectors., steps. or input.` };
}

/** Every reference in a string, in order. */
export function referencesIn(text: string): ParsedReference[] {
  const out: ParsedReference[] = [];
  for (const m of text.matchAll(TEMPLATE)) out.push(parseReference(m[1]!, m[0]));
  return out;
}

/** A string with its location in the definition, e.g. `steps[0] (charge).headers.X-Api-Key`. */
export interface LocatedString {
  field: string;
  text: string;
  /** The object key this string is the value of (inside an array: the array's key); absent for keys themselves. */
  key?: string;
}

/** Walks a JSON value and yields every string (keys included) with its field path; a key's path is its object's, marked `(a key)`. */
export function* stringsIn(value: unknown, field: string, key?: string): Generator<LocatedString> {
  if (typeof value === 'string') {
    yield key === undefined ? { field, text: value } : { field, text: value, key };
  } else if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) yield* stringsIn(value[i], `${field}[${i}]`, key);
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      // A key is located by the object holding it: a credential pasted as a key must not reappear in the error naming it.
      yield { field: `${field} (a key)`, text: k };
      yield* stringsIn(v, `${field}.${k}`, k);
    }
  }
}

/** Thrown by `substituteData` when data would be spliced into a template the proxy still resolves. */
export class TemplateInjectionError extends Error {}

function lookup(root: unknown, path: string[]): unknown {
  let cur: unknown = root;
  for (const part of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/**
 * Replaces `{{ steps... }}` and `{{ input... }}` with data from earlier steps and the trigger. A string
 * that is exactly one reference takes the referenced JSON value as is; inside longer text, values are
 * spliced in as text. Secret and connector references stay for the proxy. Data that itself contains
 * `{{`, or that completes a secret reference where it is spliced, is refused: a response from an
 * upstream API must never be able to make the proxy resolve a secret the author did not write.
 */
export function substituteData(value: unknown, data: { input: unknown; steps: Record<string, unknown> }): unknown {
  const resolve = (ref: ParsedReference): unknown => {
    if (ref.kind === 'steps') return lookup(data.steps[ref.step], ref.path);
    if (ref.kind === 'input') return lookup(data.input, ref.path);
    return undefined;
  };
  const checked = (v: unknown): unknown => {
    if (JSON.stringify(v ?? null).includes('{{')) throw new TemplateInjectionError('data from an earlier step or the trigger contains "{{"; refusing to splice it into a request');
    return v;
  };
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') {
      const whole = /^\{\{\s*([^{}]*?)\s*\}\}$/.exec(v);
      if (whole) {
        const ref = parseReference(whole[1]!, v);
        if (ref.kind === 'steps' || ref.kind === 'input') return checked(resolve(ref) ?? null);
        return v;
      }
      const spliced = v.replace(TEMPLATE, (raw, inner: string) => {
        const ref = parseReference(inner, raw);
        if (ref.kind !== 'steps' && ref.kind !== 'input') return raw;
        const found = checked(resolve(ref));
        if (found === undefined || found === null) return '';
        return typeof found === 'string' ? found : JSON.stringify(found);
      });
      // Pieces without "{{" can still complete one next to each other or to the author's text ("x{" + "{ secrets.X }}").
      if (templateReferences(spliced).join('\n') !== templateReferences(v).join('\n')) {
        throw new TemplateInjectionError('data from an earlier step or the trigger completes a secret reference where it is spliced; refusing to send it');
      }
      return spliced;
    }
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return walk(value);
}

/** Static secret names a script asks for: `secrets.get('NAME')` with a literal argument. */
export function scriptSecretNames(source: string): string[] {
  const names = new Set<string>();
  for (const m of source.matchAll(/secrets\.get\(\s*(['"`])([A-Za-z_][A-Za-z0-9_.-]*)\1/g)) names.add(m[2]!);
  return [...names];
}
