import type { MergedCheckpoint } from './log-verifier.ts';

/*
 * The checkpoints as one chain (docs/audit.md, "Verification"): each since v2 names the one before
 * it (`prev_seq`, 0 for the first, covered by its signature), and each is stored once and published
 * once. Pure functions over checkpoints already sorted by seq and checked for their signatures:
 * linear in the number of checkpoints, whatever the length of the log.
 */

/** What a verifier names: the seq of the first bad checkpoint (or event), and what is wrong with it. */
export interface ChainBreak {
  seq: number;
  problem: string;
}

/**
 * Walks the links in seq order from `fromSeq` (0 for a whole log; for a file that starts mid-chain,
 * the event before its first line: links to a checkpoint at or before it are not required).
 * `broken`: the first link only tampering makes (a checkpoint removed or inserted, links reordered, a
 * first checkpoint that does not name 0). `fork`: the first checkpoint that names a predecessor another
 * one already names; the caller reports it only once the events prove both (see `forkProblem`).
 */
export function checkpointLinks(checkpoints: readonly MergedCheckpoint[], fromSeq: number): { broken: ChainBreak | null; fork: ChainBreak | null } {
  const present = new Set(checkpoints.map((c) => c.seq));
  /** Each predecessor named so far, and the first checkpoint that named it. */
  const namedBy = new Map<number, number>();
  let fork: ChainBreak | null = null;
  let before: number | null = null;
  for (const c of checkpoints) {
    const previous = before;
    before = c.seq;
    const prev = c.prev_seq;
    // Signed as v1, before links existed: nothing to check.
    if (prev === null) continue;
    const sibling = namedBy.get(prev);
    if (sibling !== undefined) {
      fork ??= { seq: c.seq, problem: forkProblem(sibling, c.seq, prev) };
      continue;
    }
    namedBy.set(prev, c.seq);
    const linked = previous === null ? prev === 0 || (fromSeq > 0 && prev <= fromSeq) : prev === previous;
    if (linked) continue;
    if (!present.has(prev) && prev > fromSeq) {
      return { broken: { seq: prev, problem: `the checkpoint at ${prev} (named by the signed checkpoint at ${c.seq}) was removed` }, fork };
    }
    const first = fromSeq > 0 ? 'none comes before it in this file' : 'none comes before it (the first names 0)';
    const expected = previous === null ? first : `the one before it is at ${previous}`;
    return {
      broken: { seq: c.seq, problem: `the checkpoint at ${c.seq} names the checkpoint at ${prev} as the one before it, but ${expected}: a checkpoint was inserted, or the links reordered` },
      fork,
    };
  }
  return { broken: null, fork };
}

/**
 * Two checkpoints with one predecessor. Both are signed (checked before) and match the events they
 * cover (the caller reports this last): only the signing key's holder, the server, made them. Two
 * checkpointers signing at once did, before each took the audit head's lock (commit 36d85b3).
 */
function forkProblem(first: number, second: number, prev: number): string {
  const named = prev === 0 ? 'none (each says it is the first)' : `the checkpoint at ${prev}`;
  return `a fork: the checkpoints at ${first} and ${second} both name ${named} as the one before them. Both are signed by the trusted key `
    + 'and match the events they cover, which a database writer without the key cannot do: two checkpointers signing at once made such forks '
    + 'before checkpointers took the audit head\'s lock (docs/audit.md, "Signed checkpoints")';
}

/**
 * Stored rows against the `audit.checkpoint` events that publish them (each seq already matched in
 * content by `mergeCheckpoints`). `table`: the server's own table, whose every row since v2 commits
 * with its event: a row without its event, or a published checkpoint without its row, was removed.
 * `export`: a checkpoints export beside an events file, either of which may be the newer; a published
 * checkpoint is missing from it only when it holds later ones.
 */
export function checkpointPublication(checkpoints: readonly MergedCheckpoint[], rows: 'table' | 'export'): ChainBreak | null {
  const newestStored = checkpoints.reduce((max, c) => (c.stored === false ? max : Math.max(max, c.seq)), 0);
  for (const c of checkpoints) {
    if (c.stored === false && c.publishedBy !== undefined && (rows === 'table' || c.seq < newestStored)) {
      return { seq: c.seq, problem: `the checkpoint at ${c.seq}, published by event ${c.publishedBy}, has no stored row: it was removed` };
    }
    if (rows === 'table' && c.stored !== false && c.publishedBy === undefined && c.prev_seq !== null) {
      return {
        seq: c.seq,
        problem: `the checkpoint at ${c.seq} is stored, but no audit.checkpoint event publishes it: its event was removed `
          + '(or the server stopped between storing it and publishing it, which versions before both were committed together could do)',
      };
    }
  }
  return null;
}
