/**
 * Detectors for literal credentials pasted where only references belong (automation definitions; later
 * the leak scanner, SPEC §9). A finding names the detector and the span, never the text: an error
 * built from it cannot echo the credential. Every pattern is linear (no nested quantifiers) so a
 * hostile definition cannot make a save take seconds.
 */

/** One credential-looking span of the scanned text. */
export interface CredentialFinding {
  detector: string;
  index: number;
  length: number;
}

/** Shannon entropy in bits per character. */
export function shannonEntropy(text: string): number {
  const counts = new Map<string, number>();
  let n = 0;
  for (const c of text) {
    counts.set(c, (counts.get(c) ?? 0) + 1);
    n++;
  }
  let h = 0;
  for (const k of counts.values()) h -= (k / n) * Math.log2(k / n);
  return h;
}

/** Keys published in vendors' documentation as examples (AWS marks its own with EXAMPLE, see below). */
const DOCUMENTED_EXAMPLES = new Set(['sk_test_4eC39HqLyjWDarjtT1zdp7dc', 'sk_test_BQokikJOvBiI2HlWgH4olfQ2', 'pk_test_TYooMQauvdEDq54NiTphI7jx']);

/** Values that stand for a credential without being one: references, env vars, documentation placeholders. */
export function isPlaceholder(value: string): boolean {
  const v = value.trim();
  if (v.length === 0 || DOCUMENTED_EXAMPLES.has(v) || /EXAMPLE/.test(v)) return true; // AKIAIOSFODNN7EXAMPLE, wJalr…EXAMPLEKEY
  if (/\{\{|\$\{|%\{|<%|\[\[/.test(v)) return true; // template references: {{ secrets.X }}, ${X}, %{X}, <%= x %>
  if (/^\$[A-Za-z_][A-Za-z0-9_]*$|^%[A-Za-z_][A-Za-z0-9_]*%$|^(?:process\.)?env[.:(\[]/i.test(v)) return true;
  if (/^<[^>]*>$|^\[[^\]]*\]$|^\(.*\)$/.test(v)) return true; // <your-key>, [api key]
  if (/(?:x{4,}|X{4,}|\*{3,}|\.{3}|#{4,}|0{8,})/.test(v)) return true; // sk_test_xxxxxxxx, ****
  return /^(?:change[-_ ]?me|changeit|replace[-_ ]?me.*|your[-_ ].*|your[A-Z].*|example.*|sample.*|dummy.*|test|placeholder.*|redacted|todo|tbd|fixme|none|null|nil|undefined|true|false|secret|password|token|api[-_ ]?key|insert[-_ ].*)$/i.test(v);
}

/** Too little variety to be a generated credential (also catches aaaa… and 1234… placeholders). */
const tooRegular = (s: string) => shannonEntropy(s) < 2.5;

type Span = { index: number; length: number };

type Detector = { name: string } & (
  | {
    pattern: RegExp;
    /** The span to report, from the match; null to drop it. `key` is the field the text is the value of, if given. */
    accept?: (m: RegExpExecArray, text: string, key: string) => Span | null;
  }
  /** Candidate spans in text order, for what one linear regex cannot say. */
  | { scan: (text: string) => Span[] }
);

const whole = (m: RegExpExecArray) => ({ index: m.index, length: m[0].length });
const regularBody = (prefix: number) => (m: RegExpExecArray) =>
  tooRegular(m[0].slice(prefix)) || isPlaceholder(m[0].slice(prefix)) || isPlaceholder(m[0]) ? null : whole(m);

function jsonHeader(part: string): boolean {
  try {
    const header = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown;
    return typeof header === 'object' && header !== null && typeof (header as { alg?: unknown }).alg === 'string';
  } catch {
    return false;
  }
}

const PEM_BEGIN = /-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----/g;
const PEM_END = /-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----/g;
const PEM_MAX_BODY = 20_000;

/**
 * Private key blocks: from a BEGIN line to the first END line after it (within 20,000 characters, with no other
 * BEGIN between), or the BEGIN line alone. Both lines are found once each and paired in one pass: a lazy regex
 * searching ahead for the END from every BEGIN took seconds over a megabyte of BEGIN lines.
 */
function pemBlocks(text: string): Span[] {
  const begins = [...text.matchAll(PEM_BEGIN)];
  const ends = [...text.matchAll(PEM_END)];
  const out: Span[] = [];
  let j = 0;
  for (let i = 0; i < begins.length; i++) {
    const begin = begins[i]!;
    const bodyStart = begin.index + begin[0].length;
    while (j < ends.length && ends[j]!.index < bodyStart) j++;
    const end = ends[j];
    const closed = end !== undefined && end.index - bodyStart <= PEM_MAX_BODY && end.index < (begins[i + 1]?.index ?? Infinity);
    out.push({ index: begin.index, length: closed ? end.index + end[0].length - begin.index : begin[0].length });
  }
  return out;
}

const mixed = (s: string) => /[a-z]/.test(s) && /[A-Z]/.test(s) && /[0-9/+]/.test(s);

/** Format detectors, most specific first: a span claimed by one is not reported again by a later one. */
const DETECTORS: Detector[] = [
  { name: 'pem-private-key', scan: pemBlocks },
  { name: 'aws-access-key-id', pattern: /(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])/g, accept: regularBody(4) },
  {
    name: 'aws-secret-access-key',
    pattern: /(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])/g,
    accept: (m, text, key) => {
      // Near the start of a field's value, the field's name is the context a pasted key has.
      const before = (m.index < 80 ? `${key} ` : '') + text.slice(Math.max(0, m.index - 80), m.index);
      return /aws|secret/i.test(before) && mixed(m[0]) && !tooRegular(m[0]) && !isPlaceholder(m[0]) ? whole(m) : null;
    },
  },
  { name: 'stripe-key', pattern: /(?<![A-Za-z0-9_])(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,247}(?![A-Za-z0-9_])/g, accept: regularBody(8) },
  { name: 'stripe-webhook-secret', pattern: /(?<![A-Za-z0-9_])whsec_[A-Za-z0-9+/=]{20,128}(?![A-Za-z0-9_])/g, accept: regularBody(6) },
  { name: 'github-token', pattern: /(?<![A-Za-z0-9_])(?:gh[posur]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,244})(?![A-Za-z0-9_])/g, accept: regularBody(4) },
  // Bot, user, app-level (xapp-), refresh (xoxe-), browser session (xoxc- with its xoxd- cookie) and legacy tokens.
  { name: 'slack-token', pattern: /(?<![A-Za-z0-9_])(?:xox[abcdeprs]|xapp)-[A-Za-z0-9-]{10,250}/g, accept: (m) => (/\d/.test(m[0].slice(5)) ? regularBody(5)(m) : null) },
  { name: 'slack-webhook', pattern: /https:\/\/hooks\.slack\.com\/services\/[A-Za-z0-9_]{6,20}\/[A-Za-z0-9_]{6,20}\/[A-Za-z0-9_]{16,64}/g, accept: regularBody(33) },
  { name: 'gitlab-token', pattern: /(?<![A-Za-z0-9_-])glpat-[A-Za-z0-9_-]{20,64}(?![A-Za-z0-9_-])/g, accept: regularBody(6) },
  { name: 'npm-token', pattern: /(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_])/g, accept: regularBody(4) },
  { name: 'anthropic-api-key', pattern: /(?<![A-Za-z0-9_-])sk-ant-(?:api|admin)\d\d-[A-Za-z0-9_-]{80,250}(?![A-Za-z0-9_-])/g, accept: regularBody(14) },
  // Project, service-account and admin keys; legacy keys carry "T3BlbkFJ" (base64 of "OpenAI") in the middle.
  { name: 'openai-api-key', pattern: /(?<![A-Za-z0-9_-])sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,250}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})(?![A-Za-z0-9_-])/g, accept: regularBody(8) },
  { name: 'google-api-key', pattern: /(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])/g, accept: regularBody(4) },
  { name: 'sendgrid-api-key', pattern: /(?<![A-Za-z0-9_-])SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{30,64}(?![A-Za-z0-9_-])/g, accept: regularBody(3) },
  // API key SIDs only: an Account SID (AC…) is an identifier that Twilio's API puts in every request path.
  { name: 'twilio-key', pattern: /(?<![A-Za-z0-9])SK[0-9a-f]{32}(?![A-Za-z0-9])/g, accept: regularBody(2) },
  {
    name: 'jwt',
    pattern: /(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{10,2000}\.[A-Za-z0-9_-]{10,8000}\.[A-Za-z0-9_-]{16,2000}(?![A-Za-z0-9_-])/g,
    accept: (m) => (jsonHeader(m[0].slice(0, m[0].indexOf('.'))) ? whole(m) : null),
  },
  {
    // scheme://user:password@host (the user may be empty: redis://:password@host) — the password span is
    // reported; references and placeholders pass. A password may hold a raw "@" (pasted unencoded): the host
    // follows the last one.
    name: 'url-basic-auth',
    pattern: /(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,20}:\/\/[^\s:@/?#"'<>]{0,256}:([^\s/?#"'<>]{1,256})@[A-Za-z0-9[\]._-]/g,
    accept: (m) => {
      const password = m[1]!;
      if (isPlaceholder(password) || password.length < 3) return null;
      return { index: m.index + m[0].lastIndexOf(password + '@'), length: password.length };
    },
  },
];

/** Key names that say their value is a credential (JSON, YAML, env files, headers, query strings). */
const CREDENTIAL_KEY = /(?:passw(?:or)?d|^pwd$|_pwd$|^sig$|secret|token|api[-_.]?key|apikey|client[-_.]?secret|authorization|auth[-_.]?key|access[-_.]?key|account[-_.]?key|private[-_.]?key|credentials?$)/i;
/** Keys that name, point at or describe a credential rather than hold one. */
const DESCRIPTIVE_KEY = /(?:name|names|id|ids|ref|reference|url|uri|endpoint|path|file|type|ttl|expiry|expires(?:_?at|_?in)?|length|policy|field|header|env|count|hint|label|description|version|format|kind|location)$/i;
const KEY_VALUE = /(?<![A-Za-z0-9_.-])(["']?)([A-Za-z_][A-Za-z0-9_.-]{0,63})\1[ \t]*[:=][ \t]*(?:"((?:[^"\\\n]|\\.){0,1024})"|'([^'\n]{0,1024})'|([^\s"',;&}{\]]{1,1024}(?:[ \t]+[^\s"',;&}{\]]{1,1024})?))/g;

/**
 * A value shaped like a word, a name, a number, a URL or a file path, not like a generated credential. A path
 * holds no "+" or "=": base64 keys start with "/" one time in 64 and mostly carry one of them.
 */
function looksLikeText(v: string): boolean {
  return /^[a-z]+(?:[-_. ][a-z]+)*$/.test(v) || /^[A-Za-z]+$/.test(v) || /^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$/.test(v) ||
    /^[a-z]+(?:[A-Z][a-z]+)+$/.test(v) || /^[0-9.:-]+$/.test(v) || /^[a-z][a-z0-9+.-]*:\/\//i.test(v) || /^(?:\/|\.\/|~\/)[^+=]*$/.test(v);
}

/** The generic rule's thresholds (docs/redaction.md): long enough, varied enough, not a word or a reference. */
export function looksLikeLiteralSecret(value: string): boolean {
  if (value.length < 8 || value.length > 1024 || isPlaceholder(value) || looksLikeText(value)) return false;
  const classes = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^A-Za-z0-9]/].filter((r) => r.test(value)).length;
  return classes >= 2 && shannonEntropy(value) >= 3;
}

/** The literal secret `key` is assigned, as [offset, length] within `value`, or null. */
function assignedSecret(key: string, value: string, quoted: boolean): [number, number] | null {
  if (!CREDENTIAL_KEY.test(key) || DESCRIPTIVE_KEY.test(key)) return null;
  let offset = 0;
  const scheme = /^(?:Bearer|Basic|Token|Bot|Digest)[ \t]+/i.exec(value);
  if (scheme) {
    value = value.slice(scheme[0].length);
    offset = scheme[0].length;
  } else if (!quoted && /[ \t]/.test(value)) {
    value = value.split(/[ \t]/)[0]!; // an unquoted value ends at a space unless a scheme precedes it
  }
  return looksLikeLiteralSecret(value) ? [offset, value.length] : null;
}

function genericFindings(text: string): Span[] {
  const out: Span[] = [];
  for (const m of text.matchAll(KEY_VALUE)) {
    const value = m[3] ?? m[4] ?? m[5] ?? '';
    const quoted = m[3] !== undefined || m[4] !== undefined;
    const found = assignedSecret(m[2]!, value, quoted);
    if (found) out.push({ index: m.index + m[0].length - value.length - (quoted ? 1 : 0) + found[0], length: found[1] });
  }
  return out;
}

/** The credential detectors, by name (for docs and error messages); an encoded find is named `base64(NAME)` or `url-encoded(NAME)`. */
export const CREDENTIAL_DETECTORS = [...DETECTORS.map((d) => d.name), 'generic-secret-assignment'] as const;

/** How many encodings deep a credential is looked for: base64 of a service-account JSON holding a PEM is two. */
const DECODE_DEPTH = 2;
const BASE64_RUN = /[A-Za-z0-9+/_-]{40,}={0,2}/g;
const URL_RUN = /[^\s"'<>]+/g;
const PERCENT = /%[0-9A-Fa-f]{2}/;

/** Decoded bytes that read as text (a binary blob — an image, a DER body — holds no pasted credential to find). */
function asText(bytes: Buffer): string | null {
  if (bytes.length === 0) return null;
  const text = bytes.toString('utf8');
  if (text.includes('\uFFFD')) return null; // not UTF-8: random bytes pass a printable count too often
  let printable = 0;
  for (const b of bytes) if ((b >= 0x20 && b < 0x7f) || b === 0x09 || b === 0x0a || b === 0x0d || b >= 0x80) printable++;
  return printable / bytes.length >= 0.95 ? text : null;
}

const percentDecoded = (run: string) => Buffer.from(run.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1');

/**
 * Runs of base64 and of percent-encoding whose decoded text holds a credential: the run is the span. Every decoded
 * text is shorter than its run, so each level costs at most the text's length again.
 */
function encodedFindings(text: string, depth: number): Map<string, Span[]> {
  const byDetector = new Map<string, Span[]>();
  const look = (encoding: string, runs: Iterable<RegExpMatchArray>, decode: (run: string) => Buffer) => {
    for (const m of runs) {
      const decoded = asText(decode(m[0]));
      const first = decoded === null ? undefined : scan(decoded, depth - 1, undefined)[0];
      if (!first) continue;
      const detector = `${encoding}(${first.detector})`;
      const spans = byDetector.get(detector) ?? byDetector.set(detector, []).get(detector)!;
      spans.push({ index: m.index!, length: m[0].length });
    }
  };
  look('base64', text.matchAll(BASE64_RUN), (run) => Buffer.from(run, 'base64'));
  look('url-encoded', [...text.matchAll(URL_RUN)].filter((m) => PERCENT.test(m[0])), percentDecoded);
  return byDetector;
}

/**
 * Every span of `text` that looks like a literal credential, in text order, without overlaps. With `key`, the text
 * is the whole value of that key (a JSON field, a header, a query parameter), so the key-named rule judges it too:
 * the value alone carries no "password=" to give it away.
 * @example findCredentials('{"key": "sk_live_4eC39HqLyjWDarjtT1zdp7dc"}') // [{ detector: 'stripe-key', index: 9, length: 32 }]
 * @example findCredentials('Tr0ub4dor&3x', { key: 'password' }) // [{ detector: 'generic-secret-assignment', index: 0, length: 12 }]
 */
export function findCredentials(text: string, opts: { key?: string } = {}): CredentialFinding[] {
  return scan(text, DECODE_DEPTH, opts.key);
}

function scan(text: string, depth: number, key: string | undefined): CredentialFinding[] {
  let found: CredentialFinding[] = [];
  // Each detector's spans come in text order, and `found` stays sorted without overlaps, so one pointer walk
  // finds the claimed span a candidate may overlap: linear, however many findings (tens of thousands in 1 MB).
  const claim = (detector: string, spans: Iterable<Span | null>) => {
    const fresh: CredentialFinding[] = [];
    let j = 0;
    for (const span of spans) {
      if (!span) continue;
      while (j < found.length && found[j]!.index + found[j]!.length <= span.index) j++;
      const last = fresh.at(-1);
      if ((j < found.length && found[j]!.index < span.index + span.length) || (last && last.index + last.length > span.index)) continue;
      fresh.push({ detector, ...span });
    }
    found = mergeByIndex(found, fresh);
  };
  for (const d of DETECTORS) claim(d.name, 'scan' in d ? d.scan(text) : [...text.matchAll(d.pattern)].map((m) => (d.accept ? d.accept(m, text, key ?? '') : whole(m))));
  claim('generic-secret-assignment', genericFindings(text));
  const assigned = key === undefined ? null : assignedSecret(key, text, true);
  if (assigned) claim('generic-secret-assignment', [{ index: assigned[0], length: assigned[1] }]);
  if (depth > 0) for (const [detector, spans] of encodedFindings(text, depth)) claim(detector, spans);
  return found;
}

function mergeByIndex(a: CredentialFinding[], b: CredentialFinding[]): CredentialFinding[] {
  if (b.length === 0) return a;
  const out: CredentialFinding[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) out.push(j >= b.length || (i < a.length && a[i]!.index < b[j]!.index) ? a[i++]! : b[j++]!);
  return out;
}
