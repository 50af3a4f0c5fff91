/**
 * Hostile request variants for every operation of an OpenAPI document (the one the server serves):
 * a plausible request built from each schema, then that request broken one way at a time. Used by
 * test/hostile/route-fuzz.test.ts; each variant is one request, independent of the others.
 */

export interface JsonSchema {
  type?: string | string[];
  enum?: unknown[];
  anyOf?: JsonSchema[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  pattern?: string;
  format?: string;
}

interface Parameter { in: 'path' | 'query' | 'header'; name: string; schema?: JsonSchema; required?: boolean }
interface Operation {
  parameters?: Parameter[];
  requestBody?: { content?: Record<string, { schema?: JsonSchema }> };
}
export interface OpenApiDocument { paths: Record<string, Record<string, Operation>> }

export interface Variant {
  /** METHOD /path/template: what was broken */
  label: string;
  method: string;
  /** Already encoded, ready for the request line. */
  path: string;
  body?: string;
  contentType?: string;
}

/** Fields whose text the harness takes for a credential (test/helpers/credential-taps.ts) and looks for in the audit log at close. */
const CREDENTIAL = /^(?:share|password|current|new|client_secret|assertion|ticket|code|totp|value)$/;
let tags = 0;
/**
 * A credential field's text made unique, head and tail: the leak check at close would otherwise
 * find "../../etc/passwd", sent as a share here, in a comment another variant had audited.
 */
function unique(raw: string): string {
  const tag = `t${++tags}q`;
  return raw.length > 2 && raw.startsWith('"') && raw.endsWith('"') ? `"${tag}${raw.slice(1, -1)}${tag}"` : raw;
}

/** A string for a named field that the services are likely to accept, so a variant gets past the obvious. */
function plausibleString(key: string, schema: JsonSchema): string {
  if (schema.format === 'date-time') return '2026-06-02T00:00:00.000Z';
  if (CREDENTIAL.test(key)) return `t${++tags}q`.padEnd(Math.max(schema.minLength ?? 0, 4), 'q');
  const k = key.toLowerCase();
  const candidates = k.includes('env') ? ['production'] : k === 'tenant' ? ['default']
    : /name|secret|runas/.test(k) ? ['FUZZ_SECRET', 'fuzz'] : ['fuzz', 'FUZZ_SECRET', 'x'];
  const pattern = schema.pattern !== undefined ? new RegExp(schema.pattern) : null;
  const fits = (s: string) => (pattern === null || pattern.test(s)) && s.length >= (schema.minLength ?? 0) && s.length <= (schema.maxLength ?? Infinity);
  return candidates.find(fits) ?? 'x'.repeat(Math.max(1, schema.minLength ?? 1));
}

/** A value that fits the schema (as far as a simple walk can tell). */
export function sampleOf(schema: JsonSchema | undefined, key = ''): unknown {
  if (schema === undefined) return 'fuzz';
  if (schema.enum !== undefined) return schema.enum[0];
  if (schema.anyOf !== undefined) return sampleOf(schema.anyOf[0], key);
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  switch (type) {
    case 'string': return plausibleString(key, schema);
    case 'integer': case 'number': return Math.max(schema.minimum ?? 1, Math.min(1, schema.maximum ?? 1));
    case 'boolean': return false;
    case 'null': return null;
    case 'array': return Array.from({ length: schema.minItems ?? 0 }, () => sampleOf(schema.items, key));
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const name of schema.required ?? []) out[name] = sampleOf(schema.properties?.[name], name);
      return out;
    }
    default: return 'fuzz';
  }
}

const typeOf = (schema: JsonSchema | undefined): string => {
  if (schema === undefined) return 'any';
  if (schema.anyOf !== undefined) return typeOf(schema.anyOf[0]);
  if (schema.enum !== undefined) return typeof schema.enum[0];
  return (Array.isArray(schema.type) ? schema.type[0] : schema.type) ?? 'any';
};

/** JSON text for values JSON.stringify cannot write: numbers past double, lone surrogates. */
const RAW = {
  hugeNumber: '1e309',
  negativeZero: '-0',
  past2to53: '9007199254740993',
  loneSurrogate: '"a\\ud800b"',
  reversedPair: '"\\udc00\\ud800"',
};

/** Strings that look like an ordinary name but are not (or are only after normalisation). */
const LOOK_ALIKES = ['ＦＵＺＺ_SECRET', 'FUZZ_SECRE\u0162', 'FUZZ_SECRET\u200b', '\u017Fecret'];

/** Values of every JSON type but the field's own. */
function wrongTypes(type: string): string[] {
  const all: Record<string, string> = { string: '"1"', integer: '12', number: '1.5', boolean: 'true', object: '{}', array: '[]', null: 'null' };
  return Object.entries(all).filter(([t]) => t !== type && !(type === 'number' && t === 'integer')).map(([, v]) => v);
}

/** Replaces the field at `path` of `base` with raw JSON text. */
function withRaw(base: unknown, path: string[], raw: string): string {
  const marker = `__FUZZ_${Math.random().toString(36).slice(2)}__`;
  const copy = (typeof base === 'object' && base !== null && !Array.isArray(base) ? structuredClone(base) : {}) as Record<string, unknown>;
  let at = copy;
  for (const key of path.slice(0, -1)) {
    if (typeof at[key] !== 'object' || at[key] === null || Array.isArray(at[key])) at[key] = {};
    at = at[key] as Record<string, unknown>;
  }
  at[path[path.length - 1]!] = marker;
  return JSON.stringify(copy).replace(`"${marker}"`, raw);
}

function without(base: unknown, key: string): string {
  const copy = { ...(base as Record<string, unknown>) };
  delete copy[key];
  return JSON.stringify(copy);
}

/** Nested `depth` levels deep: arrays or objects. */
export function deepJson(depth: number, kind: 'array' | 'object' = 'array'): string {
  return kind === 'array' ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
}

/** The fields of an object schema, one level of nesting included, as paths. */
function fieldsOf(schema: JsonSchema | undefined, prefix: string[] = [], depth = 0): Array<{ path: string[]; schema: JsonSchema | undefined }> {
  const s = schema?.anyOf?.[0] ?? schema;
  if (s?.properties === undefined) return [];
  const out: Array<{ path: string[]; schema: JsonSchema | undefined }> = [];
  for (const [name, sub] of Object.entries(s.properties)) {
    out.push({ path: [...prefix, name], schema: sub });
    if (depth === 0) out.push(...fieldsOf(sub, [...prefix, name], 1));
  }
  return out;
}

const s0 = (schema: JsonSchema | undefined) => schema?.anyOf?.[0] ?? schema;

/** Every documented field of the body a string, `bytes` of text among them. */
function spread(schema: JsonSchema | undefined, bytes: number): string {
  const names = Object.keys(s0(schema)?.properties ?? { x: 0 });
  return JSON.stringify(Object.fromEntries(names.map((k) => [k, 'x'.repeat(Math.floor(bytes / names.length) - 16)])));
}

export interface VariantSizes {
  /** Past the body limit. */
  huge: number;
  /** Past every field's maxLength, within the body limit. */
  big: number;
  /** Just under the body limit. */
  nearLimit: number;
}

/** Body variants: a plausible body, then each field and the whole body broken in turn. */
function bodyVariants(schema: JsonSchema | undefined, sizes: VariantSizes): Array<{ what: string; body: string; contentType?: string }> {
  const { huge: hugeBytes, big: bigBytes } = sizes;
  const base = sampleOf(schema);
  const text = JSON.stringify(base);
  const out: Array<{ what: string; body: string; contentType?: string }> = [
    { what: 'a plausible body', body: text },
    { what: 'an empty body', body: '' },
    { what: 'invalid JSON', body: '{"a":' },
    { what: 'JSON with a trailing comma', body: '{"a":1,}' },
    { what: 'an array for the body', body: '[]' },
    { what: 'an array of the body', body: `[${text}]` },
    { what: 'a string for the body', body: '"fuzz"' },
    { what: 'a number past double for the body', body: RAW.hugeNumber },
    { what: 'JSON null for the body', body: 'null' },
    { what: 'text/plain', body: text, contentType: 'text/plain' },
    { what: 'a form body', body: 'a=1', contentType: 'application/x-www-form-urlencoded' },
    { what: 'multipart', body: '--b\r\n\r\n--b--', contentType: 'multipart/form-data; boundary=b' },
    { what: 'JSON declared as latin1', body: text, contentType: 'application/json; charset=latin1' },
    { what: 'a vendor JSON type', body: text, contentType: 'application/vnd.api+json' },
    { what: 'an unknown field', body: withRaw(base, ['zz_unknown'], '1') },
    { what: 'a __proto__ key', body: text.replace(/^\{/, '{"__proto__":{"x":1}' + (text === '{}' ? '' : ',')) },
    { what: 'a constructor.prototype key', body: text.replace(/^\{/, '{"constructor":{"prototype":{"x":1}}' + (text === '{}' ? '' : ',')) },
    { what: 'a duplicate key', body: text.replace(/^\{/, '{"zz":1,"zz":2' + (text === '{}' ? '' : ',')) },
    { what: 'arrays nested 100000 deep', body: deepJson(100_000) },
    { what: 'objects nested 20000 deep', body: deepJson(20_000, 'object') },
    { what: 'a 1 MB body', body: withRaw(base, ['zz_big'], JSON.stringify('x'.repeat(hugeBytes))) },
    { what: 'a 1 MB body with no unknown field', body: spread(schema, hugeBytes) },
    { what: 'a body just under the body limit with no unknown field', body: spread(schema, sizes.nearLimit) },
  ];
  const s = s0(schema);
  for (const name of s?.required ?? []) out.push({ what: `${name} missing`, body: without(base, name) });
  for (const { path, schema: field } of fieldsOf(schema)) {
    const where = path.join('.');
    const type = typeOf(field);
    const credential = CREDENTIAL.test(path.at(-1)!);
    const put = (what: string, raw: string) => out.push({ what: `${where}: ${what}`, body: withRaw(base, path, credential ? unique(raw) : raw) });
    for (const raw of wrongTypes(type)) put(`the wrong type ${raw}`, raw);
    put('an array holding its sample', `[${JSON.stringify(sampleOf(field, path.at(-1)))}]`);
    put('nested 10000 deep', deepJson(10_000));
    put('a huge number', RAW.hugeNumber);
    if (type === 'integer' || type === 'number' || type === 'any') {
      put('-0', RAW.negativeZero);
      put('2^53 + 1', RAW.past2to53);
      put('-2^53 - 1', '-' + RAW.past2to53);
      put('1e300', '1e300');
      put('-1', '-1');
      put('a fraction', '0.5');
      put('2^31', '2147483648');
    }
    if (type === 'string' || type === 'any') {
      put('text past every length limit', JSON.stringify('y'.repeat(bigBytes)));
      put('a NUL', '"fu\\u0000zz"');
      put('a lone surrogate', RAW.loneSurrogate);
      put('a reversed surrogate pair', RAW.reversedPair);
      put('an empty string', '""');
      put('only spaces', '"   "');
      put('control characters', '"a\\r\\nb\\u001b[31m"');
      put('an emoji', '"fuzz\\ud83d\\ude00"');
      for (const lookAlike of LOOK_ALIKES) put(`the look-alike ${JSON.stringify(lookAlike)}`, JSON.stringify(lookAlike));
      put('a date past year 9999', '"+275760-09-13T00:00:00.001Z"');
      put('a template', '"{{ secrets.FUZZ_SECRET }}"');
      put('a path traversal', '"../../etc/passwd"');
    }
    if (type === 'object' || type === 'any') {
      put('an object with 10000 keys', JSON.stringify(Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, 'v']))));
    }
    if (type === 'array' || type === 'any') put('an array of 10000 items', JSON.stringify(Array.from({ length: 10_000 }, () => sampleOf(field?.items, path.at(-1)))));
  }
  return out;
}

/** Values for one path or query parameter that a server must refuse cleanly (or take as just another name). */
const PARAM_VALUES: Array<{ what: string; raw: string }> = [
  { what: '10 kB', raw: 'p'.repeat(10_240) },
  { what: '190 characters', raw: 'q'.repeat(190) },
  { what: 'a NUL', raw: 'a%00b' },
  { what: 'a lone surrogate as UTF-8', raw: 'a%ED%A0%80b' },
  { what: 'invalid UTF-8', raw: 'a%FF%FEb' },
  { what: 'a broken percent escape', raw: 'a%zzb' },
  { what: 'a lone percent', raw: '%' },
  { what: 'an encoded slash', raw: 'a%2Fb' },
  { what: 'dot dot', raw: '..' },
  { what: 'an encoded dot dot', raw: '%2e%2e' },
  { what: 'a full-width look-alike', raw: encodeURIComponent('ＦＵＺＺ') },
  { what: 'the Kelvin sign', raw: encodeURIComponent('FUZ\u212A') },
  { what: 'a combining accent', raw: encodeURIComponent('fuzz\u0301') },
  { what: 'a space', raw: 'a%20b' },
  { what: 'a CR LF', raw: 'a%0D%0Ab' },
  { what: 'a number past double', raw: '1e309' },
  { what: '2^53 + 1', raw: '9007199254740993' },
  { what: '-0', raw: '-0' },
  { what: 'a negative number', raw: '-1' },
  { what: 'an empty value', raw: '' },
];

/** Path parameters that let a request reach its handler. */
function plausibleParam(name: string, schema: JsonSchema | undefined): string {
  if (typeOf(schema) === 'integer' || typeOf(schema) === 'number') return '1';
  const n = name.toLowerCase();
  if (n.includes('env')) return 'production';
  if (n === 'name') return 'FUZZ_SECRET';
  if (n === 'connector') return 'fuzz';
  return '00000000-0000-4000-8000-000000000000';
}

/** Every hostile variant of every operation in the document. */
export function variantsOf(doc: OpenApiDocument, opts: { sizes: VariantSizes; skip?: (method: string, path: string) => boolean }): Variant[] {
  const out: Variant[] = [];
  for (const [template, ops] of Object.entries(doc.paths)) {
    for (const [lower, op] of Object.entries(ops)) {
      const method = lower.toUpperCase();
      if (opts.skip?.(method, template)) continue;
      const params = op.parameters ?? [];
      const pathParams = params.filter((p) => p.in === 'path');
      const queryParams = params.filter((p) => p.in === 'query');
      const fill = (override?: { name: string; raw: string }) => template.replace(/\{([^}]+)\}/g, (_, name: string) =>
        override?.name === name ? override.raw : encodeURIComponent(plausibleParam(name, pathParams.find((p) => p.name === name)?.schema)));
      const add = (what: string, path: string, body?: { body: string; contentType?: string }) =>
        out.push({ label: `${method} ${template}: ${what}`, method, path, ...(body ? { body: body.body, contentType: body.contentType ?? 'application/json' } : {}) });
      const schema = op.requestBody?.content?.['application/json']?.schema;
      const baseBody = schema !== undefined ? { body: JSON.stringify(sampleOf(schema)) } : undefined;
      add('as documented', fill(), baseBody);
      if (schema !== undefined) {
        for (const v of bodyVariants(schema, opts.sizes)) add(v.what, fill(), { body: v.body, ...(v.contentType ? { contentType: v.contentType } : {}) });
      } else {
        // No body documented: one sent anyway, of every kind, must not be taken or crash anything.
        add('an unexpected JSON body', fill(), { body: '{"zz_unknown":1}' });
        add('an unexpected invalid JSON body', fill(), { body: '{"a":' });
        add('an unexpected empty JSON body', fill(), { body: '' });
        add('an unexpected text/plain body', fill(), { body: 'hello', contentType: 'text/plain' });
      }
      for (const p of pathParams) for (const v of PARAM_VALUES) add(`path ${p.name} ${v.what}`, fill({ name: p.name, raw: v.raw }), baseBody);
      const base = fill();
      for (const q of queryParams) {
        const sample = encodeURIComponent(String(sampleOf(q.schema, q.name)));
        for (const v of PARAM_VALUES) add(`query ${q.name} ${v.what}`, `${base}?${q.name}=${v.raw}`, baseBody);
        add(`query ${q.name} given twice`, `${base}?${q.name}=${sample}&${q.name}=${sample}`, baseBody);
        add(`query ${q.name} as an array`, `${base}?${q.name}[]=${sample}`, baseBody);
        add(`query ${q.name} without a value`, `${base}?${q.name}`, baseBody);
      }
      add('an unknown query parameter', `${base}?zz_unknown=1`, baseBody);
      add('a query string of 10 kB', `${base}?${'z'.repeat(10_240)}=1`, baseBody);
      add('a __proto__ query parameter', `${base}?__proto__=1`, baseBody);
    }
  }
  return out;
}
