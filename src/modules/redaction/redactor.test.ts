import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRedactor, redactDeep, unionRedactors } from './index.ts';
import { cpuMs } from '../../../test/helpers/cpu-time.ts';

const VALUE = 'sk_live_4eC39HqLyjWDarjtT1zdp7dc';
const UNICODE = 'pässwörd-😀-ключ';
const b64 = (s: string) => Buffer.from(s).toString('base64');

/** Every form a value takes, and how it typically shows up in text. */
const FORMS: Array<[string, (v: string) => string]> = [
  ['raw', (v) => v],
  ['base64 padded', (v) => Buffer.from(v).toString('base64')],
  ['base64 unpadded', (v) => Buffer.from(v).toString('base64').replace(/=+$/, '')],
  ['base64url', (v) => Buffer.from(v).toString('base64url')],
  ['hex lower', (v) => Buffer.from(v).toString('hex')],
  ['hex upper', (v) => Buffer.from(v).toString('hex').toUpperCase()],
  ['encodeURIComponent', (v) => encodeURIComponent(v)],
  ['form encoding', (v) => new URLSearchParams({ q: v }).toString().slice(2)],
  ['JSON-escaped', (v) => JSON.stringify(v).slice(1, -1)],
  ['JSON-escaped twice', (v) => JSON.stringify(JSON.stringify(v)).slice(1, -1)],
  ['JSON with \\u escapes', (v) => JSON.stringify(v).slice(1, -1).replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)],
  // PHP's json_encode writes "/" as "\/" (and non-ASCII as \uXXXX); Go's encoding/json writes < > & as \u003c \u003e \u0026.
  ['JSON with escaped slashes (PHP)', (v) => JSON.stringify(v).slice(1, -1).replace(/\//g, '\\/').replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)],
  ['HTML-safe JSON (Go)', (v) => JSON.stringify(v).slice(1, -1).replace(/[<>&]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)],
  // An upstream that renders an echo into a page or an XML document: each encoder writes ' its own way.
  ...(['&#x27;', '&#039;', '&#39;', '&apos;'].map((apos) => [`HTML/XML character references (' as ${apos})`,
    (v: string) => v.replace(/[&<>"']/g, (c) => (c === "'" ? apos : ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' } as Record<string, string>)[c]!))] as [string, (v: string) => string])),
];

describe('redactor: every form of a value is masked', () => {
  const values = [VALUE, UNICODE, 'a "quoted" value with spaces & symbols/+=?', 'wJalrXUtnFEMI/K7MDENG/<bPxRfiCY>', "pa'ss<w>o&rd\"x9"];
  const r = createRedactor(values);
  for (const value of values) {
    for (const [name, form] of FORMS) {
      test(`${name} of ${JSON.stringify(value.slice(0, 12))}… is masked wherever it sits`, () => {
        const encoded = form(value);
        for (const text of [encoded, `before ${encoded} after`, `x=${encoded}&y=1`, `"${encoded}"`]) {
          const out = r.redact(text);
          assert.ok(!out.includes(encoded), `${name} survived in ${JSON.stringify(out)}`);
          assert.ok(out.includes('[REDACTED]'));
        }
      });
    }
  }

  test('a value inside a larger base64 blob (HTTP Basic user:pass) is masked at each of the three byte alignments', () => {
    const password = 'hunter2-correct-horse';
    const r2 = createRedactor([password]);
    for (const user of ['', 'a', 'ab', 'abc', 'admin', 'service-account']) {
      const header = b64(`${user}:${password}`);
      const out = r2.redact(`Authorization: Basic ${header}`);
      assert.ok(out.includes('[REDACTED]'), `user ${JSON.stringify(user)}: ${out}`);
      // Decoding what is left can no longer yield the password.
      const left = out.replace('Authorization: Basic ', '').split('[REDACTED]').join('');
      assert.ok(!Buffer.from(left, 'base64').toString('latin1').includes(password));
      assert.ok(out.length < `Authorization: Basic ${header}`.length);
    }
  });

  test('the mask is configurable', () => {
    assert.equal(createRedactor([VALUE], { mask: '***' }).redact(`k=${VALUE}`), 'k=***');
  });
});

describe('redactor: overlaps, substrings and hostile sets', () => {
  test('a value that is a substring of another: the longer one is masked whole, no part survives', () => {
    const r = createRedactor(['abcdef123', 'xxabcdef123yy']);
    assert.equal(r.redact('v=xxabcdef123yy;'), 'v=[REDACTED];');
    assert.equal(r.redact('v=abcdef123;'), 'v=[REDACTED];');
  });

  test('two values that overlap in the text are masked as one span, with nothing of either left over', () => {
    const r = createRedactor(['abcdefgh', 'efghijkl']);
    assert.equal(r.redact('[abcdefghijkl]'), '[[REDACTED]]');
  });

  test('repeated and adjacent values are all masked', () => {
    const r = createRedactor([VALUE]);
    assert.equal(r.redact(`${VALUE}${VALUE} ${VALUE}`), '[REDACTED][REDACTED] [REDACTED]');
  });

  test('an empty set masks nothing and returns the text untouched; empty strings in the set are ignored', () => {
    const r = createRedactor([]);
    assert.equal(r.size, 0);
    assert.equal(r.redact('anything at all'), 'anything at all');
    assert.equal(createRedactor(['', '']).size, 0);
    assert.equal(createRedactor(['', 'abcdefg']).redact('abcdefg'), '[REDACTED]');
  });

  test('a value with a lone surrogate (not valid Unicode) still compiles and is masked', () => {
    const r = createRedactor(['bad\ud800value-xyz']);
    assert.equal(r.redact('x bad\ud800value-xyz y'), 'x [REDACTED] y');
  });

  test('size counts distinct values', () => {
    assert.equal(createRedactor([VALUE, VALUE, UNICODE]).size, 2);
  });

  test('5,000 values: every one is masked in a large text, and text without them is unchanged', () => {
    const values = Array.from({ length: 5000 }, () => randomBytes(15).toString('base64url'));
    const r = createRedactor(values);
    assert.equal(r.size, 5000);
    const filler = 'request completed status=200 tenant=default path=/v1/secrets ';
    const text = values.map((v, i) => `${filler}${i % 2 ? v : b64(v)}\n`).join('');
    const out = r.redact(text);
    assert.equal(out.split('[REDACTED]').length - 1, 5000);
    for (const v of values.slice(0, 200)) assert.ok(!out.includes(v) && !out.includes(b64(v)));
    assert.equal(r.redact(filler.repeat(1000)), filler.repeat(1000));
  });

  test('thousands of values sharing a prefix (a tenant\'s Stripe keys) do not make text full of that prefix slow', () => {
    // Every position where the shared prefix starts used to try each value in turn: seconds per megabyte.
    const values = Array.from({ length: 3000 }, () => `sk_live_${randomBytes(12).toString('hex')}`);
    const r = createRedactor(values);
    const hostile = ['sk_live_'.repeat(131_072), Buffer.from('sk_live_').toString('hex').repeat(65_536)].join('\n');
    const { result: redacted, ms } = cpuMs(() => r.redact(hostile));
    assert.equal(redacted, hostile);
    assert.ok(ms < 1_500, `took ${Math.round(ms)} ms`);
    const text = values.map((v, i) => `${i % 2 ? v : Buffer.from(v).toString('hex')} `).join('');
    assert.equal(r.redact(text), '[REDACTED] '.repeat(values.length), 'each of them is still masked');
  });

  test('unions of redactors mask the union, joining spans across them', () => {
    const u = unionRedactors([createRedactor(['abcdefgh']), createRedactor(['efghijkl'])]);
    assert.equal(u.size, 2);
    assert.equal(u.redact('abcdefghijkl!'), '[REDACTED]!');
  });
});

describe('redactor: values shorter than the floor are masked only as whole delimited tokens', () => {
  const r = createRedactor(['abc12', 'π42']);
  const cases: Array<[string, string]> = [
    ['abc12', '[REDACTED]'],
    ['password=abc12&next=1', 'password=[REDACTED]&next=1'],
    ['{"pin":"abc12"}', '{"pin":"[REDACTED]"}'],
    ['abc123 xabc12 abc12x abc12_', 'abc123 xabc12 abc12x abc12_'],
    ['the words stay: abc, ab, 12', 'the words stay: abc, ab, 12'],
    ['unicode π42 and aπ42 and π42é', 'unicode [REDACTED] and aπ42 and π42é'],
    [`basic ${b64('abc12')}`, 'basic [REDACTED]'],
  ];
  for (const [text, expected] of cases) test(`${JSON.stringify(text)} → ${JSON.stringify(expected)}`, () => assert.equal(r.redact(text), expected));

  test('the floor is configurable: with floor 3 a 5-character value is masked anywhere', () => {
    assert.equal(createRedactor(['abc12'], { floor: 3 }).redact('xabc12x'), 'x[REDACTED]x');
  });

  test('a floor below 1 is refused', () => {
    assert.throws(() => createRedactor(['x'], { floor: 0 }), RangeError);
  });
});

describe('redactDeep', () => {
  const r = createRedactor([VALUE]);

  test('redacts every string of a JSON value, object keys included, without touching the input', () => {
    const input = { a: VALUE, list: [1, `x ${VALUE}`, null, true, { [VALUE]: { deep: b64(VALUE) } }], n: 3 };
    const copy = structuredClone(input);
    const out = redactDeep(r, input);
    assert.deepEqual(input, copy, 'the input is unchanged');
    assert.deepEqual(out, { a: '[REDACTED]', list: [1, 'x [REDACTED]', null, true, { '[REDACTED]': { deep: '[REDACTED]' } }], n: 3 });
  });

  test('a "__proto__" key stays a key and cannot change the copy\'s prototype', () => {
    const input = JSON.parse(`{"__proto__": {"polluted": "${VALUE}"}}`);
    const out = redactDeep(r, input) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(out), Object.prototype);
    assert.deepEqual(Object.getOwnPropertyDescriptor(out, '__proto__')?.value, { polluted: '[REDACTED]' });
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  test('two keys that redact to the same text are both kept', () => {
    const out = redactDeep(createRedactor(['aaaaaaaa', 'bbbbbbbb']), { aaaaaaaa: 1, bbbbbbbb: 2 });
    assert.deepEqual(Object.values(out).sort(), [1, 2]);
  });

  test('a value that is a number is masked where it comes back as a JSON number; other numbers stay numbers', () => {
    const pin = createRedactor(['84721963']);
    const echoed = JSON.parse('{"pin": 84721963, "digits": [84721963, 5], "amount": 12.5, "big": 1e21}');
    assert.deepEqual(redactDeep(pin, echoed), { pin: '[REDACTED]', digits: ['[REDACTED]', 5], amount: 12.5, big: 1e21 });
  });

  test('cycles do not hang; toJSON is honoured', () => {
    const a: Record<string, unknown> = { v: VALUE, when: new Date(0) };
    a.self = a;
    assert.deepEqual(redactDeep(r, a), { v: '[REDACTED]', when: '1970-01-01T00:00:00.000Z', self: '[Circular]' });
  });
});

test('a secret that is a webhook URL is masked however the URL is spelt back, and its path is masked without the host', () => {
  const url = 'https://Hooks.Slack.com:443/services/T0AAA/B0BBB/xoxwebhook7Qz9K/';
  const r = createRedactor([url]);
  for (const [label, text] of [
    ['as stored', `could not reach ${url}`],
    ['as a URL parser writes it', `fetch failed: ${new URL(url).href}`],
    ['without the trailing slash', 'POST https://hooks.slack.com/services/T0AAA/B0BBB/xoxwebhook7Qz9K failed'],
    ['path only', 'no route for /services/T0AAA/B0BBB/xoxwebhook7Qz9K'],
    ['path, URL-encoded', `next=${encodeURIComponent('/services/T0AAA/B0BBB/xoxwebhook7Qz9K/')}`],
  ] as const) {
    assert.ok(!r.redact(text).includes('xoxwebhook7Qz9K'), label);
  }
  assert.equal(createRedactor(['https://api.example.com/v1']).redact('GET /v1 200'), 'GET /v1 200', 'a short path is not a secret on its own');
});

test('a webhook URL with a signed query is masked as a whole, and its signature alone, as written or decoded', () => {
  const sig = 'Zq3-x_9kT2pLm0NvB8cR4wYhA1sD6fGjK7eU5iO2aQ%3D';
  const url = `https://prod-17.westus.logic.azure.com/workflows/0a1b2c3d/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=${sig}`;
  const r = createRedactor([url]);
  const decoded = decodeURIComponent(sig);
  for (const [label, text] of [
    ['as stored', `could not reach ${url}`],
    ['path and query', `no route for ${url.slice(url.indexOf('/workflows'))}`],
    ['the signature as written', `signature ${sig} rejected`],
    ['the signature decoded', `signature ${decoded} rejected`],
    ['the signature in JSON', JSON.stringify({ sig: decoded })],
  ] as const) {
    assert.ok(!r.redact(text).includes(decoded.slice(0, 20)), `${label}: ${r.redact(text)}`);
  }
  assert.equal(r.redact('api-version=2016-06-01 sv=1.0'), 'api-version=2016-06-01 sv=1.0', 'short parameters are not secrets on their own');
});
