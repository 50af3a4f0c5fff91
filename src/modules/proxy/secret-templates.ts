import { SECRET_NAME } from '../shared/names.ts';

const TEMPLATE = /\{\{\s*([^{}]*?)\s*\}\}/g;

type Parts = { headers: Record<string, string>; query: Record<string, string>; body: unknown };

/**
 * Resolves `{{ secrets.NAME }}` in headers, query and body, server side, each name once (through
 * `resolve`, which authorizes and audits it). Any other reference left unresolved is a problem:
 * the proxy never forwards a template it does not understand.
 */
export async function resolveSecretTemplates(parts: Parts, resolve: (name: string) => Promise<string>): Promise<Parts | { problem: string }> {
  const names = new Set<string>();
  let problem: string | null = null;
  const scan = (text: string) => {
    for (const m of text.matchAll(TEMPLATE)) {
      const [ns, ...rest] = m[1]!.split('.');
      const name = rest.join('.');
      if (ns === 'secrets' && SECRET_NAME.test(name) && name.length <= 128) names.add(name);
      else problem ??= `unresolved reference ${m[0].slice(0, 80)}: only {{ secrets.NAME }} is resolved by the proxy`;
    }
  };
  const walk = (v: unknown, fn: (s: string) => string): unknown => {
    if (typeof v === 'string') return fn(v);
    if (Array.isArray(v)) return v.map((x) => walk(x, fn));
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, fn)]));
    return v;
  };
  walk(parts, (s) => (scan(s), s));
  if (problem) return { problem };
  const values = new Map<string, string>();
  for (const name of names) values.set(name, await resolve(name));
  const fill = (s: string) => s.replace(TEMPLATE, (_raw, inner: string) => values.get(inner.split('.').slice(1).join('.'))!);
  const filled = walk(parts, fill) as Parts;
  for (const v of Object.values(filled.headers)) if (/[\r\n\0]/.test(v)) return { problem: 'a secret value cannot go into a header: it holds CR, LF or NUL' };
  return filled;
}
