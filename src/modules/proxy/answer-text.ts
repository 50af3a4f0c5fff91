import { TextDecoder } from 'node:util';

/** The encodings an answer is read in: UTF-8, or UTF-16 either way round. */
export type AnswerEncoding = 'utf-8' | 'utf-16le' | 'utf-16be';

/** Byte order marks and the encoding each announces: one wins over the label, as in the Encoding Standard's decode. */
const BOMS: ReadonlyArray<readonly [readonly number[], AnswerEncoding]> = [[[0xef, 0xbb, 0xbf], 'utf-8'], [[0xfe, 0xff], 'utf-16be'], [[0xff, 0xfe], 'utf-16le']];

/** The `charset` parameter of a Content-Type, unquoted; null when there is none. */
function charsetOf(contentType: string | null): string | null {
  for (const param of (contentType ?? '').split(';').slice(1)) {
    const eq = param.indexOf('=');
    if (eq !== -1 && param.slice(0, eq).trim().toLowerCase() === 'charset') return param.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
  }
  return null;
}

/**
 * The encoding to read an answer's body in: its byte order mark, else a UTF-16 `charset`, else UTF-8 (also for the
 * labels of encodings that write ASCII as ASCII, Latin-1 or Shift_JIS: a value reads there as it does in UTF-8). Null
 * for a label no decoder knows (UTF-7, UTF-32, EBCDIC, ...), whose text masking could not read.
 * @example
 * answerEncoding('application/json; charset=UTF-16', body); // 'utf-16le' (no byte order mark: the label's default)
 * answerEncoding('text/plain; charset=utf-7', body);        // null
 */
export function answerEncoding(contentType: string | null, body: Uint8Array): AnswerEncoding | null {
  const bom = BOMS.find(([mark]) => mark.every((byte, i) => body[i] === byte));
  if (bom) return bom[1];
  const label = charsetOf(contentType);
  if (label === null) return 'utf-8';
  let encoding: string;
  try {
    encoding = new TextDecoder(label).encoding;
  } catch {
    return null;
  }
  return encoding === 'utf-16le' || encoding === 'utf-16be' ? encoding : 'utf-8';
}

/**
 * The body as text in `encoding`, or null when a value shows in another reading of the same bytes: the caller can
 * turn the text back into those bytes, so a mask must find every value in the text returned. UTF-8 labelled UTF-16
 * (an endpoint that sets the Content-Type it is asked for) reads as text no mask matches; UTF-16 or UTF-32 read as
 * UTF-8 is each value with NULs between its characters. Read as UTF-8 whatever its label, an honest UTF-16 answer
 * (a server honouring `Accept: ...;charset=UTF-16` writes one) would carry an echoed value past every mask.
 */
export function readAnswer(body: Buffer, encoding: AnswerEncoding, mask: (text: string) => string): string | null {
  const text = new TextDecoder(encoding).decode(body);
  const others = encoding !== 'utf-8' ? [body.toString('utf8')] : text.includes('\0') ? [text.replaceAll('\0', '')] : [];
  return others.some((other) => mask(other) !== other) ? null : text;
}
