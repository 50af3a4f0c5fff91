/** `{{ secrets.NAME }}` references inside header values, query values and body strings. */
const TEMPLATE = /\{\{\s*secrets\.([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}/g;

/** The secret names a string's templates reference, in order, repeats included: exactly what the proxy would resolve. */
export function templateReferences(text: string): string[] {
  return [...text.matchAll(TEMPLATE)].map((m) => m[1]!);
}

/** Every secret name referenced by templates in the strings of a JSON-like value. */
export function templateNames(value: unknown, into: Set<string> = new Set()): Set<string> {
  if (typeof value === 'string') for (const name of templateReferences(value)) into.add(name);
  else if (Array.isArray(value)) for (const v of value) templateNames(v, into);
  else if (value !== null && typeof value === 'object') for (const v of Object.values(value)) templateNames(v, into);
  return into;
}

/**
 * UTF-8 bytes of every string of a JSON-like value once its templates are filled, counted without filling them:
 * a reference repeated thousands of times must be refused before it multiplies a value into memory.
 */
export function filledBytes(value: unknown, values: ReadonlyMap<string, string>): number {
  if (typeof value === 'string') {
    let bytes = Buffer.byteLength(value);
    for (const m of value.matchAll(TEMPLATE)) bytes += Buffer.byteLength(values.get(m[1]!) ?? '') - Buffer.byteLength(m[0]);
    return bytes;
  }
  if (Array.isArray(value)) return value.reduce((n: number, v) => n + filledBytes(v, values), 0);
  if (value !== null && typeof value === 'object') return Object.values(value).reduce((n: number, v) => n + filledBytes(v, values), 0);
  return 0;
}

/** Replaces templates in every string of a JSON-like value (keys are left alone: they are not values). */
export function fillTemplates<T>(value: T, values: ReadonlyMap<string, string>): T {
  if (typeof value === 'string') return value.replace(TEMPLATE, (_, name: string) => values.get(name) ?? '') as T;
  if (Array.isArray(value)) return value.map((v) => fillTemplates(v, values)) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fillTemplates(v, values)])) as T;
  }
  return value;
}
