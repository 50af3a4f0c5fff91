/**
 * Bounds on how deep and how long a tenant's policy may be, checked on the text before Cedar sees
 * it. Cedar's parser, validator and evaluator recurse over the expression tree inside WebAssembly:
 * a policy nested a few hundred brackets deep, or with a few thousand operators in a row, overflows
 * the wasm stack ("memory access out of bounds") and leaves the one Cedar instance of the process
 * broken for every tenant. Measured on Cedar 4 (docs/roles-and-policies.md, "Limits"): nesting
 * 300 and chains of 3,000 `+` crash; the limits here are an order of magnitude below.
 */
export const MAX_NESTING = 32;
export const MAX_OPERATORS_PER_POLICY = 200;

const WORD_OPERATORS = new Set(['if', 'in', 'has', 'like', 'is']);
const SYMBOL_OPERATORS = ['&&', '||', '==', '!=', '<=', '>=', '<', '>', '+', '-', '*', '!'];
const OPEN = new Set(['(', '[', '{']);
const CLOSE = new Set([')', ']', '}']);

/** Problems with the text's shape, one per policy at most; empty when within bounds. */
export function complexityErrors(text: string): string[] {
  const errors: string[] = [];
  let depth = 0;
  let deepest = 0;
  let operators = 0;
  let policy = 1;
  const close = () => {
    if (deepest > MAX_NESTING) errors.push(`policy ${policy}: nested ${deepest} deep; at most ${MAX_NESTING} levels of brackets are allowed`);
    else if (operators > MAX_OPERATORS_PER_POLICY) errors.push(`policy ${policy}: ${operators} operators; at most ${MAX_OPERATORS_PER_POLICY} are allowed in one policy`);
    deepest = 0;
    operators = 0;
    policy++;
  };
  for (let i = 0; i < text.length;) {
    const c = text[i]!;
    if (c === '"') {
      // A string literal: skip it whole, escapes included (an unterminated one is Cedar's to report).
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
      i++;
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (OPEN.has(c)) {
      deepest = Math.max(deepest, ++depth);
      i++;
    } else if (CLOSE.has(c)) {
      depth = Math.max(0, depth - 1);
      i++;
    } else if (c === ';' && depth === 0) {
      close();
      i++;
    } else if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < text.length && /[A-Za-z0-9_]/.test(text[j]!)) j++;
      if (WORD_OPERATORS.has(text.slice(i, j))) operators++;
      i = j;
    } else {
      const op = SYMBOL_OPERATORS.find((o) => text.startsWith(o, i));
      if (op) operators++;
      i += op?.length ?? 1;
    }
  }
  if (deepest > 0 || operators > 0) close();
  return errors;
}
