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
    /** Everything kept, decoded (a multi-byte character cut at the end becomes U+FFFD). */
    text(): string {
      return Buffer.concat(chunks).toString('utf8');
    },
  };
}

/** The longest prefix of `text` that is at most `maxBytes` of UTF-8, never splitting a character. */
export function cutToBytes(text: string, maxBytes: number): { text: string; cut: boolean } {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return { text, cut: false };
  let end = maxBytes;
  // Back up over continuation bytes (10xxxxxx) to the start of the character the limit falls in.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return { text: bytes.subarray(0, end).toString('utf8'), cut: true };
}
