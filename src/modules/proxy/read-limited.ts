/**
 * Reads a response body up to `maxBytes` (then stops and cancels the stream), within `timeoutMs`
 * overall, so a huge or endless answer costs neither memory nor time.
 */
export async function readLimited(res: Response, maxBytes: number, timeoutMs: number): Promise<{ text: string; truncated: boolean }> {
  if (!res.body) return { text: '', truncated: false };
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw Object.assign(new Error('read timed out'), { name: 'TimeoutError' });
      let timer: NodeJS.Timeout | undefined;
      const next = await Promise.race([
        reader.read(),
        new Promise<never>((_, reject) => { timer = setTimeout(() => reject(Object.assign(new Error('read timed out'), { name: 'TimeoutError' })), left); }),
      ]).finally(() => clearTimeout(timer));
      if (next.done) break;
      if (size + next.value.byteLength > maxBytes) {
        chunks.push(next.value.subarray(0, maxBytes - size));
        truncated = true;
        break;
      }
      chunks.push(next.value);
      size += next.value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return { text: Buffer.concat(chunks).toString('utf8'), truncated };
}
