import type { FastifySchemaCompiler } from 'fastify';
import type { TSchema } from 'typebox';
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

/**
 * TypeBox validation as @fastify/type-provider-typebox's compiler does it (compiled checks; query
 * strings and path parameters converted from strings first, bodies never), without running the
 * interpreted Value.Convert where it cannot change anything: path parameters that are all strings,
 * and an empty query string. That conversion was a tenth of a secret read's CPU.
 */
export const validatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  const check = Compile(schema);
  const convertible = httpPart !== 'body' && !stringsOnly(schema);
  return (value): { value: unknown } | { error: never } => {
    const converted = convertible && !isEmpty(value) ? Value.Convert(schema, value) : value;
    if (check.Check(converted)) return { value: converted };
    return { error: check.Errors(converted) as never };
  };
};
