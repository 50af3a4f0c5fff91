import type { ParseArgsOptionsConfig } from 'node:util';
import { parseServerAddress, type ServerAddressProblem } from '../platform/server-address.ts';

/** A mistake in how the CLI was called: exit code 2 and a hint, never a request. */
export class UsageError extends Error {
  readonly hint: string;
  constructor(message: string, hint = "run 'keyhold help' for usage") {
    super(message);
    this.name = 'UsageError';
    this.hint = hint;
  }
}

/** Options every command accepts, in any position. */
export const GLOBAL_OPTIONS = {
  addr: { type: 'string' },
  token: { type: 'string' },
  tenant: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsOptionsConfig;

export const DEFAULT_ADDR = 'http://127.0.0.1:8200';

export interface GlobalSettings {
  addr: string;
  token: string | null;
  tenant: string | null;
  json: boolean;
}

/** What to do about a refused --addr, where the default hint (run 'keyhold help') does not say it. */
const ADDR_HINTS: Partial<Record<ServerAddressProblem, (raw: string) => string>> = {
  'not-url': () => 'use e.g. --addr http://127.0.0.1:8200',
  credentials: () => 'give the token in KEYHOLD_TOKEN',
  // Tokens, shares and values would cross the network in the clear (the server itself serves plain HTTP only on loopback).
  'plain-http': (raw) => `use https://${new URL(raw).host}`,
};

type Flags = Record<string, string | boolean | Array<string | boolean> | undefined>;

/** Flags win over the environment, the environment over the default. */
export function globalSettings(flags: Flags, env: Record<string, string | undefined>): GlobalSettings {
  const raw = str(flags, 'addr') ?? nonEmpty(env.KEYHOLD_ADDR) ?? DEFAULT_ADDR;
  const parsed = parseServerAddress(raw);
  if (!parsed.ok) throw new UsageError(`--addr/KEYHOLD_ADDR ${parsed.message}`, ADDR_HINTS[parsed.problem]?.(raw));
  return {
    addr: parsed.url.href.replace(/\/+$/, ''),
    token: headerSafe(str(flags, 'token') !== undefined ? '--token' : 'KEYHOLD_TOKEN', str(flags, 'token') ?? nonEmpty(env.KEYHOLD_TOKEN) ?? null),
    tenant: headerSafe(str(flags, 'tenant') !== undefined ? '--tenant' : 'KEYHOLD_TENANT', str(flags, 'tenant') ?? nonEmpty(env.KEYHOLD_TENANT) ?? null),
    json: flags.json === true,
  };
}

/**
 * A setting that goes in a request header: visible ASCII only. Anything else (a line break, a
 * pasted "…") fetch refuses with a message quoting the whole header, and so the token, to stderr.
 */
function headerSafe(name: string, value: string | null): string | null {
  if (value !== null && !/^[\x21-\x7e]+$/.test(value)) {
    throw new UsageError(`${name} holds a space, line break or non-ASCII character, which cannot be sent in a header (not shown)`, `check how ${name} was set`);
  }
  return value;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/** A string flag's value, if given. */
export function str(flags: Flags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v : undefined;
}

/** Every value of a repeatable string flag (`multiple: true`), in order; empty when absent. */
export function strings(flags: Flags, name: string): string[] {
  const v = flags[name];
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).filter((x): x is string => typeof x === 'string');
}

/** A string flag that the command cannot do without. */
export function required(flags: Flags, name: string, example: string): string {
  const v = str(flags, name);
  if (v === undefined || v === '') throw new UsageError(`--${name} is required`, `e.g. --${name} ${example}`);
  return v;
}

/** A whole-number flag within bounds, or undefined when absent. */
export function int(flags: Flags, name: string, min: number, max: number): number | undefined {
  const v = str(flags, name);
  if (v === undefined) return undefined;
  return parseWhole(`--${name}`, v, min, max);
}

export function parseWhole(what: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${what} must be a whole number (got "${text}")`);
  const n = Number(text);
  if (n < min || n > max) throw new UsageError(`${what} must be between ${min} and ${max} (got ${n})`);
  return n;
}

/** "1,2, 5" -> [1, 2, 5]. */
export function intList(flags: Flags, name: string): number[] | undefined {
  const v = str(flags, name);
  if (v === undefined) return undefined;
  const parts = v.split(',').map((p) => p.trim()).filter((p) => p !== '');
  if (parts.length === 0) throw new UsageError(`--${name} needs at least one number, e.g. --${name} 1,2`);
  return parts.map((p) => parseWhole(`--${name}`, p, 1, 2_147_483_647));
}

/** The positional arguments of a command, checked against how many it takes. */
export function positionals(args: string[], names: string[], usage: string): string[] {
  if (args.length < names.length) throw new UsageError(`missing ${names.slice(args.length).join(' ')}`, `usage: keyhold ${usage}`);
  if (args.length > names.length) throw new UsageError(`unexpected argument "${args[names.length]}"`, `usage: keyhold ${usage}`);
  return args;
}
