/**
 * The encoded forms a secret value takes on its way into a log, an HTTP message or a JSON document.
 * Every form is masked; docs/redaction.md lists them and says why each is there.
 */

/** Base64 characters that depend only on the value's bytes when `offset` bytes (mod 3) precede it in a larger blob. */
function innerBase64(bytes: Buffer, offset: number, url: boolean): string {
  const padded = Buffer.concat([Buffer.alloc(offset), bytes, Buffer.alloc(3)]);
  const encoded = padded.toString(url ? 'base64url' : 'base64');
  const first = Math.ceil((8 * offset) / 6);
  const last = Math.floor((8 * (offset + bytes.length)) / 6); // exclusive
  return encoded.slice(first, last);
}

/** JSON escaping that also writes every non-ASCII code unit as \uXXXX (Python's json.dumps, many loggers). */
function asciiJson(value: string, upper: boolean): string {
  const escaped = JSON.stringify(value).slice(1, -1);
  return escaped.replace(/[^\x00-\x7f]/g, (c) => {
    const hex = c.charCodeAt(0).toString(16).padStart(4, '0');
    return `\\u${upper ? hex.toUpperCase() : hex}`;
  });
}

/** PHP's json_encode writes "/" as "\/" by default. */
const slashEscaped = (json: string) => json.replaceAll('/', '\\/');

/** Go's encoding/json (and other HTML-safe encoders) write < > & and U+2028/U+2029 as \u escapes. */
const htmlSafe = (json: string) => json.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/**
 * HTML and XML character references, as an upstream that renders what it echoes into a page or an
 * XML document writes them: & < > " always, and ' in each encoder's own way (Python's html.escape
 * &#x27;, PHP's htmlspecialchars &#039;, React and lodash &#39;, XML serialisers &apos;).
 */
const HTML_BASE: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' };
const htmlEscaped = (value: string) => ['&#x27;', '&#039;', '&#39;', '&apos;'].map((apos) =>
  value.replace(/[&<>"']/g, (c) => (c === "'" ? apos : HTML_BASE[c]!)));

const lowerPercent = (s: string) => s.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());

/** Shortest embedded-base64 form worth masking: fewer stable characters would match random base64 by chance. */
const MIN_INNER_FORM = 6;

/** Shortest path of a URL value masked on its own: a webhook URL's secret is its path, and errors echo it without the host. */
const MIN_URL_PATH = 16;

/**
 * Other spellings of a value that is an http(s) URL (a webhook URL that is itself the credential): as a URL
 * parser writes it back (host lower-cased, default port dropped, characters percent-encoded), without a
 * trailing slash, its path onward alone, as a server or a client error prints it without the host, and each
 * long query parameter value alone (a Teams Workflows URL's `sig=`), as written and decoded.
 */
function urlVariants(value: string): string[] {
  if (!/^https?:\/\//i.test(value)) return [];
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return [];
  }
  const trim = (s: string) => s.replace(/\/+$/, '');
  const out = [url.href, trim(url.href), trim(value)];
  for (const path of [url.pathname + url.search + url.hash, value.replace(/^https?:\/\/[^/]*/i, '')]) {
    if (trim(path).length >= MIN_URL_PATH) out.push(path, trim(path));
  }
  const query = value.split('#')[0]!.split('?').slice(1).join('?');
  for (const pair of query.split('&')) {
    const written = pair.slice(pair.indexOf('=') + 1);
    if (!pair.includes('=') || written.length < MIN_URL_PATH) continue;
    out.push(written);
    for (const decoded of new URLSearchParams(pair).values()) out.push(decoded);
  }
  return out.filter((v) => v !== value && v.length > 0);
}

/**
 * Every distinct form of `value`, and of each spelling of it when it is a URL (`urlVariants`). `embedded` adds the
 * base64 characters that survive when the value sits inside a larger base64 blob (HTTP Basic `user:pass`), at each
 * of the three byte alignments.
 */
export function encodedForms(value: string, opts: { embedded: boolean }): string[] {
  const forms = new Set<string>();
  for (const variant of [value, ...urlVariants(value)]) addForms(forms, variant, opts);
  forms.delete('');
  return [...forms];
}

function addForms(forms: Set<string>, value: string, opts: { embedded: boolean }): void {
  forms.add(value);
  const bytes = Buffer.from(value, 'utf8');
  const b64 = bytes.toString('base64');
  const b64url = bytes.toString('base64url');
  forms.add(b64).add(b64.replace(/=+$/, ''));
  forms.add(b64url).add(b64url + '='.repeat((4 - (b64url.length % 4)) % 4));
  const hex = bytes.toString('hex');
  forms.add(hex).add(hex.toUpperCase());
  // A lone surrogate has no URI encoding (encodeURIComponent throws); encoders that accept one write U+FFFD.
  const uri = encodeURIComponent(value.toWellFormed());
  const form = new URLSearchParams([['', value]]).toString().slice(1);
  forms.add(uri).add(lowerPercent(uri)).add(form).add(lowerPercent(form));
  const json = JSON.stringify(value).slice(1, -1);
  forms.add(json).add(JSON.stringify(json).slice(1, -1)).add(asciiJson(value, false)).add(asciiJson(value, true));
  forms.add(slashEscaped(json)).add(slashEscaped(asciiJson(value, false))).add(htmlSafe(json));
  if (/[&<>"']/.test(value)) for (const escaped of htmlEscaped(value)) forms.add(escaped);
  if (opts.embedded) {
    for (const offset of [0, 1, 2]) {
      for (const url of [false, true]) {
        const inner = innerBase64(bytes, offset, url);
        if (inner.length >= MIN_INNER_FORM) forms.add(inner);
      }
    }
  }
}
