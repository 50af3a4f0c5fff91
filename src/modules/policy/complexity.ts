/**
 * Bounds on how deep and how long a tenant's policy may be, checked on the text before Cedar sees
 * it. Cedar's parser, validator and evaluator recurse over the expression tree inside WebAssembly:
 * a policy nested a few hundred brackets deep, or with a few thousand operators in a row, overflows
 * the wasm stack ("memory access out of bounds") and leaves the one Cedar instance of the process
 * broken for every tenant. Measured on Cedar 4 (docs/roles-and-policies.md, "Limits"): nesting
 * 300 and chains of 3,000 `+` crash; the limits here are an order of magnitude below.
 */
export const MAX_NESTING = 32;
/** Limit on a tenant policy file, so a policy set stays reviewable and cheap to evaluate. */
export const MAX_POLICY_BYTES = 64 * 1024;
/**
 * Operators, member accesses (`.`), index and call brackets: each one is a node of the expression
 * tree, and a chain of any of them nests (`context.a.a.a...`, `["a"]["a"]...`, `.isIpv4().isIpv4()`).
 */
export const MAX_OPERATORS_PER_POLICY = 200;

const WORD_OPERATORS = new Set(['if', 'in', 'has', 'like', 'is']);
const SYMBOL_OPERATORS = ['&&', '||', '==', '!=', '<=', '>=', '<', '>', '+', '-', '*', '!', '.'];
const OPEN = new Set(['(', '[', '{']);
const CLOSE = new Set([')', ']', '}']);

/** Problems with the text's shape, one per policy at most; empty when within bounds. */
export function complexityErrors(text: string): string[] {
  // Control characters (but tab and line ends) have no place in a policy; refusing them keeps this
  // scan and Cedar's lexer from reading comments and strings differently.
  const control = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.exec(text);
  if (control) return [`policy text holds a control character (U+${control[0].charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()}) at offset ${control.index}`];
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
      // Cedar ends a comment at CR as well as LF.
      while (i < text.length && text[i] !== '\n' && text[i] !== '\r') i++;
    } else if (OPEN.has(c)) {
      deepest = Math.max(deepest, ++depth);
      // An index or call bracket is a node too: `x["a"]["a"]` nests without ever being deep.
      if (c !== '{') operators++;
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
