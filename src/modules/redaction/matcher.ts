/**
 * Multi-pattern matching for redaction: one pass over the text with a rolling hash of the first
 * `k` characters, looked up in an open-addressing table of pattern prefixes (Rabin–Karp over a set).
 * Memory stays near the size of the patterns themselves (an Aho–Corasick trie over thousands of
 * values × forms costs tens of bytes per character, per tenant). Patterns that share a prefix share a
 * bucket, sorted longest first, so the first hit at a position is the longest match there.
 */

const BASE = 0x01000193;
const GOLDEN = 0x9e3779b1 | 0;
const MAX_WINDOW = 8;
const WORD = /[\p{L}\p{N}\p{M}]/u;

/** A compiled set of patterns: `long` ones match anywhere, `whole` ones only as a delimited token. */
export interface PatternSet {
  readonly values: number;
  readonly maxLength: number;
  readonly k: number;
  readonly bk: number;
  readonly shift: number;
  readonly slotMask: number;
  readonly keys: Int32Array;
  readonly slots: Int32Array;
  readonly buckets: string[][];
  /**
   * For buckets larger than GROUP_ABOVE, the same patterns by length, longest first: one set lookup per
   * length instead of one comparison per pattern, so values sharing a prefix (a tenant's thousands of
   * `sk_live_` keys) cost per distinct length, not per value, wherever text repeats that prefix.
   */
  readonly byLength: Array<Array<[number, Set<string>]> | null>;
  /** Prefixes shorter than `k` of long patterns: a stream tail that is one may still become a match. */
  readonly shortPrefixes: Set<string>;
  readonly whole: Map<number, string[]>;
  readonly wholeFirst: Set<number>;
  readonly maxWhole: number;
}

function power(base: number, exp: number): number {
  let r = 1;
  for (let i = 0; i < exp; i++) r = Math.imul(r, base);
  return r;
}

function hashAt(text: string, at: number, k: number): number {
  let h = 0;
  for (let j = at; j < at + k; j++) h = (Math.imul(h, BASE) + text.charCodeAt(j)) | 0;
  return h;
}

const wholeKey = (text: string, at: number, len: number) =>
  len === 1 ? text.charCodeAt(at) : 65_536 + text.charCodeAt(at) * 65_536 + text.charCodeAt(at + 1);

/** Letters, digits, marks and `_` (any script) are word characters; everything else delimits a token. */
export function isWordAt(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  if (c < 128) return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
  let cp = c;
  if (c >= 0xdc00 && c <= 0xdfff && i > 0) {
    const hi = text.charCodeAt(i - 1);
    if (hi >= 0xd800 && hi <= 0xdbff) cp = text.codePointAt(i - 1)!;
  } else if (c >= 0xd800 && c <= 0xdbff) {
    cp = text.codePointAt(i)!;
  }
  return WORD.test(String.fromCodePoint(cp));
}

const byLengthDesc = (a: string, b: string) => b.length - a.length;
const GROUP_ABOVE = 8;

function groupByLength(bucket: string[]): Array<[number, Set<string>]> | null {
  if (bucket.length <= GROUP_ABOVE) return null;
  const groups = new Map<number, Set<string>>();
  for (const p of bucket) {
    const group = groups.get(p.length);
    if (group) group.add(p);
    else groups.set(p.length, new Set([p]));
  }
  return [...groups].sort((a, b) => b[0] - a[0]);
}

/** Compiles patterns once; `values` is only reported (Redactor.size). */
export function compilePatterns(long: Set<string>, whole: Set<string>, values: number): PatternSet {
  for (const p of long) whole.delete(p); // a form that is both is masked everywhere
  let minLong = Infinity;
  let maxLength = 0;
  for (const p of long) {
    minLong = Math.min(minLong, p.length);
    maxLength = Math.max(maxLength, p.length);
  }
  const k = long.size === 0 ? 1 : Math.min(MAX_WINDOW, minLong);
  const byHash = new Map<number, string[]>();
  const shortPrefixes = new Set<string>();
  for (const p of long) {
    const h = hashAt(p, 0, k);
    const list = byHash.get(h);
    if (list) list.push(p);
    else byHash.set(h, [p]);
    for (let len = 1; len < k; len++) shortPrefixes.add(p.slice(0, len));
  }
  let size = 16;
  while (size < byHash.size * 4) size *= 2;
  const keys = new Int32Array(size);
  const slots = new Int32Array(size);
  const shift = 32 - Math.log2(size);
  const buckets: string[][] = [];
  const byLength: Array<Array<[number, Set<string>]> | null> = [];
  for (const [h, list] of byHash) {
    let slot = Math.imul(h, GOLDEN) >>> shift;
    while (slots[slot] !== 0) slot = (slot + 1) & (size - 1);
    keys[slot] = h;
    buckets.push(list.sort(byLengthDesc));
    byLength.push(groupByLength(list));
    slots[slot] = buckets.length;
  }
  const wholeMap = new Map<number, string[]>();
  const wholeFirst = new Set<number>();
  let maxWhole = 0;
  for (const p of whole) {
    const key = wholeKey(p, 0, p.length);
    const list = wholeMap.get(key);
    if (list) list.push(p);
    else wholeMap.set(key, [p]);
    wholeFirst.add(p.charCodeAt(0));
    maxWhole = Math.max(maxWhole, p.length);
  }
  for (const list of wholeMap.values()) list.sort(byLengthDesc);
  return {
    values, maxLength: Math.max(maxLength, maxWhole), k, bk: power(BASE, k - 1), shift, slotMask: size - 1,
    keys, slots, buckets, byLength, shortPrefixes, whole: wholeMap, wholeFirst, maxWhole,
  };
}

/** The index of the bucket of patterns whose first k characters hash to `h`, or -1. */
function bucketIndexAt(set: PatternSet, h: number): number {
  let slot = Math.imul(h, GOLDEN) >>> set.shift;
  let b: number;
  while ((b = set.slots[slot]!) !== 0) {
    if (set.keys[slot] === h) return b - 1;
    slot = (slot + 1) & set.slotMask;
  }
  return -1;
}

function bucketAt(set: PatternSet, h: number): string[] | null {
  const b = bucketIndexAt(set, h);
  return b < 0 ? null : set.buckets[b]!;
}

/** The length of the longest pattern of bucket `b` that starts at `i`, or 0. */
function longestAt(set: PatternSet, b: number, text: string, i: number): number {
  const rest = text.length - i;
  const groups = set.byLength[b];
  if (groups) {
    for (const [length, patterns] of groups) if (length <= rest && patterns.has(text.slice(i, i + length))) return length;
    return 0;
  }
  for (const p of set.buckets[b]!) if (p.length <= rest && text.startsWith(p, i)) return p.length;
  return 0;
}

/**
 * Appends [start, end) pairs of every match starting at or after `from`, in start order per kind.
 * `final`: the text ends here (a whole-token match may end at the last character); otherwise more may follow.
 */
export function collectMatches(set: PatternSet, text: string, from: number, final: boolean, out: number[]): void {
  const n = text.length;
  const { k, bk } = set;
  if (set.buckets.length > 0 && n - from >= k) {
    const { slots, shift } = set;
    let h = hashAt(text, from, k);
    for (let i = from; ; i++) {
      // Most positions probe one empty slot; only then is the bucket looked up.
      const b = slots[Math.imul(h, GOLDEN) >>> shift] === 0 ? -1 : bucketIndexAt(set, h);
      if (b >= 0) {
        const length = longestAt(set, b, text, i);
        if (length > 0) out.push(i, i + length);
      }
      if (i + k >= n) break;
      h = (Math.imul(h - Math.imul(text.charCodeAt(i), bk), BASE) + text.charCodeAt(i + k)) | 0;
    }
  }
  if (set.whole.size === 0) return;
  for (let i = from; i < n; i++) {
    if (!set.wholeFirst.has(text.charCodeAt(i))) continue;
    if (i > 0 && isWordAt(text, i - 1)) continue;
    let best = 0;
    for (const key of [wholeKey(text, i, 1), i + 1 < n ? wholeKey(text, i, 2) : -1]) {
      for (const p of set.whole.get(key) ?? []) {
        if (p.length <= best || p.length > n - i || !text.startsWith(p, i)) continue;
        const end = i + p.length;
        if (end === n ? final : !isWordAt(text, end)) best = p.length;
      }
    }
    if (best > 0) out.push(i, i + best);
  }
}

/**
 * The first position at or after `from` where a match could start but cannot be decided until more
 * text arrives (the stream holds back from there); `text.length` when every match is decided.
 */
export function undecidedFrom(set: PatternSet, text: string, from: number): number {
  const n = text.length;
  let first = n;
  for (let p = Math.max(from, n - set.maxLength); p < n && p < first; p++) {
    const rest = n - p;
    if (set.buckets.length > 0) {
      if (rest < set.k) {
        if (set.shortPrefixes.has(text.slice(p))) first = p;
      } else {
        const bucket = bucketAt(set, hashAt(text, p, set.k));
        if (bucket?.some((pat) => pat.length > rest && pat.startsWith(text.slice(p)))) first = p;
      }
    }
    if (first === p || set.whole.size === 0 || rest > set.maxWhole) continue;
    if (p > 0 && isWordAt(text, p - 1)) continue;
    if (rest === 1) {
      if (set.wholeFirst.has(text.charCodeAt(p))) first = p;
      continue;
    }
    const tail = text.slice(p);
    if ((set.whole.get(wholeKey(text, p, 2)) ?? []).some((pat) => pat.length >= rest && pat.startsWith(tail))) first = p;
  }
  return first;
}
