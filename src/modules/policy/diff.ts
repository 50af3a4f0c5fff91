/**
 * Bound on the work of a diff: table cells filled, or diagonals tried plus lines compared. Policy
 * edits need a fraction of it; past it, the changed middle is shown as added then removed, still
 * a correct diff, so a hostile pair of files costs milliseconds and a few MB, never a
 * (lines × lines) table.
 */
export const MAX_DIFF_WORK = 1_000_000;

/**
 * A unified-style line diff: `  ` common, `+ ` added, `- ` removed, added lines first where both
 * would do. Ordinary policy files (after their common first lines, at most MAX_DIFF_WORK table
 * cells) get the LCS diff this has always shown; larger ones Myers' O(ND) search, bounded.
 * @example lineDiff('a\nb', 'a\nc') // '  a\n+ c\n- b'
 */
export function lineDiff(before: string, after: string): string {
  return diffLines(before.split('\n'), after.split('\n')).lines.join('\n');
}

/** The diff as lines, and the work it took (for tests and limits). */
export function diffLines(a: string[], b: string[], maxWork = MAX_DIFF_WORK): { lines: string[]; work: number } {
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  const out = a.slice(0, start).map((line) => `  ${line}`);
  const restA = a.slice(start);
  const restB = b.slice(start);
  if ((restA.length + 1) * (restB.length + 1) <= maxWork) {
    out.push(...lcsDiff(restA, restB));
    return { lines: out, work: (restA.length + 1) * (restB.length + 1) };
  }
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const middle = shortestEdit(a.slice(start, endA), b.slice(start, endB), maxWork);
  let i = start;
  let j = start;
  // Without a script within the bound, the whole middle is one changed stretch.
  for (const [mi, mj] of [...(middle.matches ?? []).map(([x, y]) => [x + start, y + start] as const), [endA, endB] as const]) {
    while (j < mj) out.push(`+ ${b[j++]}`);
    while (i < mi) out.push(`- ${a[i++]}`);
    if (i < endA) {
      out.push(`  ${a[i]}`);
      i++;
      j++;
    }
  }
  for (let k = endA; k < a.length; k++) out.push(`  ${a[k]}`);
  return { lines: out, work: middle.work };
}

/** The LCS table walk, for inputs whose table fits the bound. */
function lcsDiff(a: string[], b: string[]): string[] {
  const w = b.length + 1;
  const lcs = new Int32Array((a.length + 1) * w);
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i * w + j] = a[i] === b[j] ? lcs[(i + 1) * w + j + 1]! + 1 : Math.max(lcs[(i + 1) * w + j]!, lcs[i * w + j + 1]!);
    }
  }
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      out.push(`  ${a[i]}`);
      i++;
      j++;
    } else if (j < b.length && (i === a.length || lcs[i * w + j + 1]! >= lcs[(i + 1) * w + j]!)) {
      out.push(`+ ${b[j++]}`);
    } else {
      out.push(`- ${a[i++]}`);
    }
  }
  return out;
}

/** Myers' greedy forward search with a trace for backtracking: the matched (a, b) index pairs in order, or null past the bound. */
function shortestEdit(a: string[], b: string[], maxWork: number): { matches: [number, number][] | null; work: number } {
  const n = a.length;
  const m = b.length;
  if (n === 0 || m === 0) return { matches: [], work: 0 };
  const max = n + m;
  const off = max + 1;
  const v = new Int32Array(2 * max + 3);
  /** trace[d] holds v[-(d+1)..d+1] as it was before step d. */
  const trace: Int32Array[] = [];
  let work = 0;
  for (let d = 0; d <= max; d++) {
    trace.push(v.slice(off - d - 1, off + d + 2));
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[off + k - 1]! < v[off + k + 1]!) ? v[off + k + 1]! : v[off + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
        work++;
      }
      v[off + k] = x;
      if (++work > maxWork) return { matches: null, work };
      if (x >= n && y >= m) return { matches: backtrack(trace, n, m), work };
    }
  }
  return { matches: null, work };
}

function backtrack(trace: Int32Array[], n: number, m: number): [number, number][] {
  const matches: [number, number][] = [];
  let x = n;
  let y = m;
  for (let d = trace.length - 1; d >= 0; d--) {
    const saved = trace[d]!;
    const at = (k: number) => saved[k + d + 1]!;
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = d === 0 ? 0 : at(prevK);
    const prevY = d === 0 ? 0 : prevX - prevK;
    while (x > prevX && y > prevY) matches.push([--x, --y]);
    x = prevX;
    y = prevY;
  }
  return matches.reverse();
}
