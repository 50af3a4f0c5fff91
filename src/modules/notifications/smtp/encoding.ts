/**
 * The two encodings that keep a message 7-bit and in short lines, so any relay carries it whole without
 * 8BITMIME: RFC 2047 encoded-words for header text, quoted-printable (RFC 2045 §6.7) for the body.
 */

/** RFC 5322 §2.1.1: a line SHOULD be at most 78 characters, and MUST be at most 998. */
const LINE = 78;
const HARD_LINE = 998;
/** RFC 2047 §2: an encoded-word is at most 75 characters, and a line holding one at most 76. */
const WORD = 75;
const WORD_LINE = 76;
/** RFC 2045 §6.7 (5): an encoded body line is at most 76 characters, the soft break's `=` included. */
const QP_LINE = 76;

/** RFC 5322 §3.6.8: a field name is printable ASCII without the colon. */
const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]{1,76}$/;
/** Header text a reader shows as is: printable ASCII and blanks, no blank at either end, nothing a reader would decode. */
const PLAIN = /^(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?$/;
/** Fields whose value is an address list (RFC 5322 §3.6.2-3): they may not hold encoded-words, only folding. */
const ADDRESS_FIELDS = new Set(['from', 'sender', 'reply-to', 'to', 'cc', 'bcc']);

/**
 * Folds `value` before blanks so each line stays within 78 characters, a word longer than that on a line
 * of its own; null when a word is longer than `limit`. Every continuation line starts with the blank it
 * was folded before and holds a word (never only blanks).
 */
function foldAtBlanks(name: string, value: string, limit: number): string | null {
  let out = `${name}:`;
  let width = out.length;
  // Every word but the first carries the blanks before it; the last also those after it.
  const words = value.match(/[ \t]*[^ \t]+[ \t]*$|[ \t]*[^ \t]+/g) ?? [];
  for (const [i, word] of words.entries()) {
    const piece = i === 0 ? ` ${word}` : word;
    const size = Buffer.byteLength(piece);
    if (size > limit) return null;
    const fold = width + size > LINE;
    out += fold ? `\r\n${piece}` : piece;
    width = fold ? size : width + size;
  }
  return out;
}

/** The most UTF-8 octets one B encoded-word carries in `width` characters: `=?UTF-8?B?` … `?=` around the base64. */
const octetsIn = (width: number) => Math.floor((Math.min(width, WORD) - 12) / 4) * 3;

/**
 * `value` as RFC 2047 B encoded-words of UTF-8, each of whole characters (§5 (3)), one per line after the
 * first, so every line holds at most 76 characters. A reader drops the folding between two encoded-words.
 */
function encodedWords(name: string, value: string): string {
  const first = octetsIn(WORD_LINE - name.length - 2);
  const rest = octetsIn(WORD_LINE - 1);
  const words: string[] = [];
  let chunk: Buffer[] = [];
  let size = 0;
  const room = () => (words.length === 0 && first >= 4 ? first : rest);
  for (const ch of value) {
    const bytes = Buffer.from(ch, 'utf8');
    if (size > 0 && size + bytes.length > room()) {
      words.push(`=?UTF-8?B?${Buffer.concat(chunk).toString('base64')}?=`);
      chunk = [];
      size = 0;
    }
    chunk.push(bytes);
    size += bytes.length;
  }
  words.push(`=?UTF-8?B?${Buffer.concat(chunk).toString('base64')}?=`);
  return `${name}:${first >= 4 ? ' ' : '\r\n '}${words.join('\r\n ')}`;
}

/**
 * One header field, folded, with no line break but the folding: a CR or LF in `value` becomes a space, so
 * the text can never start a field of its own or end the header. Unstructured text that is not plain
 * printable ASCII, or has a word too long for a line, goes out as encoded-words; an address list is only
 * folded (it holds bare addresses, which cannot be encoded). Throws on a name that is not a field name.
 * @example
 * headerField('Subject', 'Zoë\r\nBcc: x@example.com'); // 'Subject: =?UTF-8?B?Wm/DqyBCY2M6IHhAZXhhbXBsZS5jb20=?='
 */
export function headerField(name: string, value: string): string {
  if (!FIELD_NAME.test(name)) throw new Error('SMTP: a header name is not a field name (printable ASCII without ":")');
  const text = value.replace(/[\r\n]+/g, ' ');
  if (ADDRESS_FIELDS.has(name.toLowerCase())) {
    const folded = foldAtBlanks(name, text, HARD_LINE);
    if (folded === null) throw new Error(`SMTP: the ${name} header holds an address too long for a line`);
    return folded;
  }
  return (PLAIN.test(text) && !text.includes('=?') && foldAtBlanks(name, text, LINE)) || encodedWords(name, text);
}

/**
 * `text` as quoted-printable UTF-8: every line break of any kind (CRLF, CR, LF) is a CRLF hard break, each
 * encoded line is at most 76 characters (soft breaks `=` where a line is longer), and only printable ASCII
 * is left as is; `=`, control characters, 8-bit octets and a blank ending a line are escaped.
 * @example
 * quotedPrintable('Zoë = ok \nnext'); // 'Zo=C3=AB =3D ok=20\r\nnext'
 */
export function quotedPrintable(text: string): string {
  return text.split(/\r\n|\r|\n/).map((line) => {
    const bytes = Buffer.from(line, 'utf8');
    const out: string[] = [];
    let current = '';
    bytes.forEach((b, i) => {
      const literal = (b >= 0x21 && b <= 0x7e && b !== 0x3d) || ((b === 0x20 || b === 0x09) && i < bytes.length - 1);
      const piece = literal ? String.fromCharCode(b) : `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
      if (current.length + piece.length > QP_LINE - 1) {
        out.push(`${current}=`);
        current = '';
      }
      current += piece;
    });
    out.push(current);
    return out.join('\r\n');
  }).join('\r\n');
}
