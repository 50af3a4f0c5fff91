/**
 * A bounded byte sink for a child's stream: keeps the first `limit + lookahead` bytes and counts
 * (but drops) the rest, so a script printing without end costs memory once, not per byte.
 * The lookahead is kept so redaction sees a secret that straddles the cut whole; the text is cut
 * to `limit` only after it has been redacted.
 */
export function createCapture(limit: number, lookahead: number) {
  const chunks: Buffer[] = [];
  let kept = 0;
  let total = 0;
  return {
    push(chunk: Buffer): void {
      total += chunk.length;
      const room = limit + lookahead - kept;
      if (room <= 0) return;
      const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
      chunks.push(part);
      kept += part.length;
    },
    /** Bytes the stream carried in all. */
    get total(): number {
      return total;
    },
    /** Whether every byte the stream carried was kept. */
    get complete(): boolean {
      return kept === total;
    },
    /** Everything kept, decoded (a multi-byte character cut at the end becomes U+FFFD). */
    text(): string {
      return Buffer.concat(chunks).toString('utf8');
    },
  };
}
