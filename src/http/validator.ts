import type { FastifySchemaCompiler } from 'fastify';
import { Type, type TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import { Value } from 'typebox/value';

/** An object schema whose every property is a plain string: converting strings to it changes nothing. */
function stringsOnly(schema: TSchema): boolean {
  const s = schema as { type?: unknown; properties?: Record<string, { type?: unknown }> };
  return s.type === 'object' && s.properties !== undefined && Object.values(s.properties).every((p) => p.type === 'string');
}

function isEmpty(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  for (const _ in value) return false;
  return true;
}

/** How deep a request's JSON may nest. Far past any real body; keeps every recursive walk (here, in Cedar, in the services) off the stack limit. */
export const MAX_JSON_DEPTH = 64;

/**
 * The first thing in a request no schema can refuse, as a JSON pointer and what is wrong there (null: nothing).
 *
 * JSON nested deeper than MAX_JSON_DEPTH: a body may hold any JSON in places (a webhook's input, an
 * access policy document), and 100 000 levels would overflow the stack of whatever walks it next.
 *
 * A string holding U+0000: PostgreSQL cannot store NUL in text (SQLite can), so a name, id or filter
 * with one would reach the database and fail there; it is refused here on every dialect alike. Secret
 * values (a body's top-level `value`) are exempt: they are encrypted to bytes and may hold any
 * character. So is a body whose schema says `x-nul-allowed` (`nul: false`): its handler refuses NUL
 * where it matters, with a code and an event of its own (the proxy).
 *
 * A lone surrogate (JSON's `"\ud800"`): UTF-8 cannot encode it, so the database would store U+FFFD
 * and a read would return text the caller never sent. Secret values are checked by their service.
 */
function unstorable(value: unknown, exempt: boolean, nul: boolean, depth: number): { at: string; message: string } | null {
  // Hot: every request's path parameters pass here. for...in, and a path built only when one is found.
  if (typeof value === 'string') {
    if (nul && value.includes('\u0000')) return { at: '', message: 'must not contain the NUL character (U+0000)' };
    return value.isWellFormed() ? null : { at: '', message: 'must be well-formed Unicode (no lone surrogates)' };
  }
  if (typeof value !== 'object' || value === null) return null;
  if (depth === MAX_JSON_DEPTH) return { at: '', message: `must not nest deeper than ${MAX_JSON_DEPTH} levels` };
  for (const key in value) {
    if (exempt && key === 'value') continue;
    const below = unstorable((value as Record<string, unknown>)[key], false, nul, depth + 1);
    if (below !== null) return { at: `/${key.replace(/~/g, '~0').replace(/\//g, '~1')}${below.at}`, message: below.message };
  }
  return null;
}

/**
 * The spellings a query string or path parameter may use for a number or a boolean. TypeBox's
 * conversion is lenient (`1.5` becomes the integer 1, `0x10` 16, an empty string 0, `yes` stays a
 * string but `1` becomes true): a parameter in any other spelling stays a string and fails its check.
 */
const CANONICAL: Record<string, RegExp> = {
  integer: /^-?(?:0|[1-9][0-9]*)$/,
  number: /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?$/,
  boolean: /^(?:true|false)$/,
};

/** The first top-level property whose string is not in its type's canonical spelling (null: none). */
function looseSpelling(schema: TSchema, value: unknown): string | null {
  const properties = (schema as { properties?: Record<string, { type?: unknown }> }).properties;
  if (properties === undefined || typeof value !== 'object' || value === null) return null;
  for (const key in value) {
    const pattern = CANONICAL[properties[key]?.type as string];
    const raw = (value as Record<string, unknown>)[key];
    if (pattern !== undefined && typeof raw === 'string' && !pattern.test(raw)) return key;
  }
  return null;
}

/**
 * TypeBox validation as @fastify/type-provider-typebox's compiler does it (compiled checks; query
 * strings and path parameters converted from strings first, bodies never), without running the
 * interpreted Value.Convert where it cannot change anything: path parameters that are all strings,
 * and an empty query string. That conversion was a tenth of a secret read's CPU.
 */
export const validatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  // Compiled when the route is first asked (as its serializers are: lazy-compilers.ts), not at start-up.
  let compiled: ReturnType<typeof Compile<TSchema>> | null = null;
  const convertible = httpPart !== 'body' && !stringsOnly(schema);
  const nulAllowed = (schema as { 'x-nul-allowed'?: unknown })['x-nul-allowed'] === true;
  // `body: Type.Optional(...)`: a request with no body at all is valid (fastify hands a missing body
  // to the validator as null, as it does a JSON `null`; the handler sees no body either way).
  const bodyOptional = httpPart === 'body' && Type.IsOptional(schema);
  return (value): { value: unknown } | { error: never } => {
    if (bodyOptional && (value === null || value === undefined)) return { value: undefined };
    const converting = convertible && !isEmpty(value);
    const loose = converting ? looseSpelling(schema, value) : null;
    if (loose !== null) {
      const type = (schema as { properties: Record<string, { type: string }> }).properties[loose]!.type;
      return { error: [{ instancePath: `/${loose}`, message: `must be ${type === 'boolean' ? 'true or false' : `a plain decimal ${type}`}` }] as never };
    }
    const converted = converting ? Value.Convert(schema, value) : value;
    // Before the schema's check, so nothing walks a body nested past the limit.
    const bad = unstorable(converted, httpPart === 'body', !nulAllowed, 0);
    if (bad !== null) return { error: [{ instancePath: bad.at, message: bad.message }] as never };
    const check = (compiled ??= Compile(schema));
    if (!check.Check(converted)) return { error: check.Errors(converted) as never };
    return { value: converted };
  };
};
