import { setsOf, spansOf, undecided, type Redactor } from './redactor.ts';

/** Redacts text that arrives in chunks (a child process's stdout), whatever the chunk boundaries. */
export interface StreamRedactor {
  /** Returns the redacted text that is decided so far; holds back only a tail that may still become a match. */
  push(chunk: string): string;
  /** Flushes the held-back tail (redacted) and resets the stream. */
  end(): string;
}

/**
 * Wraps a redactor for chunked text. The stream keeps back the shortest tail at which a value (or a
 * form) could still start, plus one character of left context for the whole-token rule; a mask that
 * straddles the cut is written once and the rest of its span is swallowed when it arrives.
 */
export function createStreamRedactor(r: Redactor): StreamRedactor {
  const { sets, mask } = setsOf(r);
  let carry = '';
  let ctx = 0; // 1 when carry[0] is already-written left context
  let covered = 0; // characters after the context already under a written mask

  function emit(buf: string, cut: number, final: boolean): string {
    const spans = spansOf(sets, buf, ctx, final);
    let coveredEnd = ctx + covered;
    let out = '';
    let at = Math.min(coveredEnd, cut);
    for (let i = 0; i < spans.length; i += 2) {
      const s = spans[i]!;
      const e = spans[i + 1]!;
      if (s >= cut) break;
      if (s < coveredEnd) {
        coveredEnd = Math.max(coveredEnd, e); // continues a mask already written
        at = Math.min(coveredEnd, cut);
        continue;
      }
      out += buf.slice(at, s) + mask;
      coveredEnd = e;
      at = Math.min(e, cut);
    }
    out += buf.slice(at, cut);
    covered = Math.max(0, coveredEnd - cut);
    return out;
  }

  return {
    push(chunk) {
      if (chunk.length === 0) return '';
      const buf = carry + chunk;
      if (r.size === 0) return chunk;
      const cut = undecided(sets, buf, ctx);
      const out = emit(buf, cut, false);
      if (cut >= 1) {
        carry = buf.slice(cut - 1);
        ctx = 1;
      } else {
        carry = buf;
        ctx = 0;
      }
      return out;
    },
    end() {
      const out = r.size === 0 ? '' : emit(carry, carry.length, true);
      carry = '';
      ctx = 0;
      covered = 0;
      return out;
    },
  };
}
