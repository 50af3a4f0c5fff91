import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { findCredentials, isPlaceholder, shannonEntropy } from './detectors.ts';
import { cpuMs } from '../../../test/helpers/cpu-time.ts';

// Credential-shaped strings are assembled at run time so this file itself does not trip secret scanners.
const rand = (n: number, alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789') =>
  Array.from(randomBytes(n), (b) => alphabet[b % alphabet.length]).join('');
const upperDigits = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const hex = '0123456789abcdef';
const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const jwt = (() => {
  const head = b64url({ alg: 'HS256', typ: 'JWT' });
  const body = b64url({ sub: 'runner', iat: 1_700_000_000 });
  return `${head}.${body}.${createHmac('sha256', 'k').update(`${head}.${body}`).digest('base64url')}`;
})();
const pem = ['-----BEGIN', 'RSA PRIVATE KEY-----'].join(' ') + `\nMIIEow${rand(60)}\n-----END RSA PRIVATE KEY-----`;
const awsSecret = rand(38) + '/+';
const azureKey = `${rand(86)}==`;
/** A base64 key that happens to start with "/": not a file path. */
const slashKey = `/${rand(42)}=`;

/** [detector, text, the credential inside it]. */
const POSITIVES: Array<[string, string, string]> = [
  ['aws-access-key-id', `"accessKeyId": "AKIA${rand(16, upperDigits)}"`, ''],
  ['aws-access-key-id', `ASIA${rand(16, upperDigits)}`, ''],
  ['aws-secret-access-key', `aws_secret_access_key = ${awsSecret}`, awsSecret],
  ['aws-secret-access-key', `{"SecretAccessKey":"${awsSecret}"}`, awsSecret],
  ['aws-secret-access-key', `export AWS_SECRET=${awsSecret}`, awsSecret],
  ['stripe-key', `Authorization: Bearer ${'sk_' + 'live_' + rand(24)}`, ''],
  ['stripe-key', `{"key":"${'sk_' + 'test_' + rand(24)}"}`, ''],
  ['stripe-key', `restricted ${'rk_' + 'live_' + rand(24)}`, ''],
  ['stripe-webhook-secret', `signing: ${'whsec_' + rand(32)}`, ''],
  ['github-token', `token ${'ghp_' + rand(36)}`, ''],
  ['github-token', `${'gho_' + rand(36)}`, ''],
  ['github-token', `${'ghs_' + rand(36)}`, ''],
  ['github-token', `${'github_' + 'pat_' + rand(22) + '_' + rand(59)}`, ''],
  ['slack-token', `${'xoxb-' + '1234567890-' + rand(24)}`, ''],
  ['slack-token', `${'xoxp-' + '98765432101-' + rand(30)}`, ''],
  ['slack-token', `${'xapp-' + '1-A0' + rand(9, upperDigits) + '-' + '4711815012345-'}${rand(64, hex)}`, ''],
  ['slack-token', `refresh: ${'xoxe-' + '1-'}${rand(140)}`, ''],
  ['slack-token', `${'xoxc-' + '1144308666012-6053440654281-5985127682476-'}${rand(64, hex)}`, ''],
  ['slack-token', `cookie d=${'xoxd-' + rand(8) + '1' + rand(50)}`, ''],
  ['gitlab-token', `PRIVATE-TOKEN: ${'glpat-' + rand(20)}`, ''],
  ['npm-token', `//registry.npmjs.org/:_authToken=${'npm_' + rand(36)}`, ''],
  ['openai-api-key', `${'sk-' + 'proj-'}${rand(48)}_${rand(40)}`, ''],
  ['anthropic-api-key', `x-api-key: ${'sk-ant-' + 'api03-'}${rand(93)}-${rand(6)}AA`, ''],
  ['slack-webhook', `${'https://hooks.slack.com/services/'}T${rand(8, upperDigits)}/B${rand(8, upperDigits)}/${rand(24)}`, ''],
  ['google-api-key', `?key=AIza${rand(35)}`, ''],
  ['sendgrid-api-key', `SG.${rand(22)}.${rand(43)}`, ''],
  ['twilio-key', `"apiKey": "SK${rand(32, hex)}"`, ''],
  ['pem-private-key', JSON.stringify({ key: pem }), ''],
  ['pem-private-key', pem, ''],
  ['jwt', `Authorization: Bearer ${jwt}`, jwt],
  ['url-basic-auth', 'https://admin:S3cr3t-Pa55@api.example.com/v1', 'S3cr3t-Pa55'],
  ['url-basic-auth', '"dsn": "postgres://app:q8Zr!2xLw@db.internal:5432/main"', 'q8Zr!2xLw'],
  ['url-basic-auth', 'REDIS_URL=redis://:r7Kq2Wz9xPl4@cache.internal:6379/0', 'r7Kq2Wz9xPl4'],
  ['generic-secret-assignment', `DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=${azureKey};EndpointSuffix=core.windows.net`, azureKey],
  ['generic-secret-assignment', `{"signing_secret": "${slashKey}"}`, slashKey],
  ['generic-secret-assignment', '{"password": "Tr0ub4dor&3x"}', 'Tr0ub4dor&3x'],
  ['generic-secret-assignment', 'client_secret: 9f8e7d6cBA54xyz', '9f8e7d6cBA54xyz'],
  ['generic-secret-assignment', 'API_KEY=q7W2e9R4t6Y1', 'q7W2e9R4t6Y1'],
  ['generic-secret-assignment', 'headers: { authorization: "Bearer a8Fk2Lq9Zx7Pw3Nm" }', 'a8Fk2Lq9Zx7Pw3Nm'],
  ['generic-secret-assignment', "{'apikey': 'Zq1-Xw2-Ec3-Rv4'}", 'Zq1-Xw2-Ec3-Rv4'],
  ['generic-secret-assignment', 'access_token=mF_9.B5f-4.1JqM&type=bearer', 'mF_9.B5f-4.1JqM'],
  ['generic-secret-assignment', `https://acct.blob.core.windows.net/c/f.csv?sv=2022-11-02&sp=r&sig=${encodeURIComponent(azureKey.slice(0, 43) + '=')}`, encodeURIComponent(azureKey.slice(0, 43) + '=')],
  ['url-basic-auth', 'postgres://app:p@ss-9xLq2w@db.internal:5432/main', 'p@ss-9xLq2w'],
  // Encoded: the whole encoded run is the span; the detector says what it decoded to.
  ['base64(pem-private-key)', `{"tls": ${JSON.stringify(Buffer.from(pem).toString('base64'))}}`, Buffer.from(pem).toString('base64')],
  ['base64(pem-private-key)', Buffer.from(JSON.stringify({ type: 'service_account', private_key: pem })).toString('base64'), ''],
  ['base64(url-basic-auth)', Buffer.from('postgres://app:q8Zr!2xLw@db:5432/x').toString('base64url'), ''],
  ['url-encoded(pem-private-key)', `k=${encodeURIComponent(pem)}`, ''],
  ['url-encoded(url-basic-auth)', `https://app.example/cb?next=${encodeURIComponent('postgres://app:q8Zr2xLw@db:5432/x')}`, ''],
  ['url-encoded(github-token)', `state=${encodeURIComponent('{"t":"' + 'ghp_' + rand(36) + '"}')}`, ''],
];

describe('credential detectors find literal credentials', () => {
  for (const [detector, text, credential] of POSITIVES) {
    test(`${detector}: ${text.slice(0, 24).replace(/[A-Za-z0-9]{6,}/g, '…')}`, () => {
      const findings = findCredentials(text);
      assert.equal(findings.length, 1, JSON.stringify(findings));
      const [f] = findings;
      assert.equal(f!.detector, detector);
      if (credential) assert.equal(text.slice(f!.index, f!.index + f!.length), credential, 'the span is exactly the credential');
      assert.deepEqual(Object.keys(f!).sort(), ['detector', 'index', 'length'], 'a finding never carries the text');
    });
  }

  test('encoded credentials are each named for what they decode to', () => {
    const text = `${Buffer.from(pem).toString('base64')} ${encodeURIComponent('https://u:Pw-9x7Q2z@h.example')} ${Buffer.from(`token=${'ghp_' + rand(36)}`).toString('base64')}`;
    assert.deepEqual(findCredentials(text).map((f) => f.detector), ['base64(pem-private-key)', 'url-encoded(url-basic-auth)', 'base64(github-token)']);
  });

  test('several credentials in one definition are each found, in order, without overlaps', () => {
    const text = JSON.stringify({ steps: [{ url: 'https://u:Pw-9x7Q2z@h.example' }, { headers: { Authorization: `Bearer ${jwt}` } }, { key: `AIza${rand(35)}` }] });
    assert.deepEqual(findCredentials(text).map((f) => f.detector), ['url-basic-auth', 'jwt', 'google-api-key']);
  });
});

describe('a value whose key is given apart (a JSON field, a header) is judged as that key\'s assignment', () => {
  const cases: Array<[string, string, boolean]> = [
    ['Authorization', 'Bearer a8Fk2Lq9Zx7Pw3Nm', true],
    ['X-Api-Key', 'q7W2e9R4t6Y1zZ', true],
    ['password', 'Tr0ub4dor&3x', true],
    ['client_secret', '9f8e7d6cBA54xyz', true],
    ['password', '{{ secrets.DB_PASSWORD }}', false],
    ['token_type', 'Bearer', false],
    ['password_policy', 'min-length-12', false],
    ['note', 'Tr0ub4dor&3x', false],
    ['secret', 'changeme', false],
  ];
  for (const [key, value, found] of cases) {
    test(`${key}: ${found ? 'found' : 'quiet'}`, () => {
      const findings = findCredentials(value, { key });
      assert.equal(findings.length, found ? 1 : 0, JSON.stringify(findings));
      if (found) assert.equal(findings[0]!.detector, 'generic-secret-assignment');
      assert.deepEqual(findCredentials(value).length, 0, 'without its key the value alone says nothing');
    });
  }
});

/** Realistic text that must not be flagged. */
const NEGATIVES: Array<[string, string]> = [
  ['a UUID', `{"id": "${randomUUID()}", "requestId": "${randomUUID()}"}`],
  ['git SHAs', `commit ${randomBytes(20).toString('hex')} (abbrev ${randomBytes(4).toString('hex')})`],
  ['an AWS-ish hex digest next to the word secret', `secret digest ${randomBytes(20).toString('hex')}`],
  ['ordinary English', 'Please send the password reset link; the token expires in one hour. The secret to success is practice.'],
  ['a URL without credentials', 'https://api.example.com:8443/v1/charges?limit=10&starting_after=ch_123#top'],
  ['a URL with a user but no password', 'ssh://git@github.com/org/repo.git'],
  ['base64 of plain words', Buffer.from('the quick brown fox jumps over the lazy dog').toString('base64')],
  ['template references', '{"password": "{{ secrets.DB_PASSWORD }}", "token": "{{secrets.API_TOKEN}}", "url": "https://u:{{ secrets.P }}@h"}'],
  ['a reference in a URL without spaces', 'postgres://app:{{secrets.DB_PASSWORD}}@db:5432/x'],
  ['env var references', 'API_KEY=$STRIPE_KEY\npassword: ${DB_PASSWORD}\nsecret = process.env.SECRET_VALUE'],
  ['placeholders', '{"api_key": "xxxxxxxxxxxxxxxx", "password": "<your-password>", "secret": "changeme", "token": "YOUR_TOKEN_HERE", "apikey": "********"}'],
  ['documentation-style keys', `AKIA${'X'.repeat(16)} and ${'sk_' + 'live_'}${'x'.repeat(24)}`],
  ['keys that name a secret rather than hold one', '{"secret_name": "PAYMENT_API_KEY", "tokenUrl": "https://auth.example.com/token", "password_policy": "min12chars", "token_type": "Bearer", "secretRef": "STRIPE_LIVE"}'],
  ['numbers and booleans under credential keys', 'token_ttl: 3600\npassword_required: true\napi_key_count = 12'],
  ['short or low-variety values', '{"password": "hunter22", "token": "abcabcabcabc", "pin": "1234"}'],
  ['a JWT-shaped string whose header is not a JWT header', `${b64url({ foo: 1 })}.${b64url({ bar: 2 })}.${rand(20)}`],
  ['a dotted version or host', 'service.example.com.v1.2.3 and node-24.1.0'],
  ['identifiers under credential keys', '{"token": "refreshToken", "secret": "clientSecret", "authorization": "required"}'],
  ['file paths under credential keys', 'secret: /run/secrets/db_password\ntoken: ./config/token.txt\napi_key: ~/.keys/api'],
  // An Account SID is an identifier, and Twilio's API puts it in the request path (where no reference may go).
  ['a Twilio Account SID in a request path', `/2010-04-01/Accounts/AC${randomBytes(16).toString('hex')}/Messages.json`],
  ['AWS documentation example keys', 'aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'],
  ["Stripe's published test key", `Authorization: Bearer ${'sk_' + 'test_'}4eC39HqLyjWDarjtT1zdp7dc`],
  ['base64 image data', `data:image/png;base64,${randomBytes(600).toString('base64')}`],
  ['base64 of ordinary JSON', Buffer.from(JSON.stringify({ id: randomUUID(), token_type: 'Bearer', note: 'nothing secret in here at all' })).toString('base64')],
  ['URL-encoded text without credentials', `https://api.example.com/search?q=${encodeURIComponent('password reset "token expired" a@b.com')}&redirect=${encodeURIComponent('https://app.example.com/a?b=c')}`],
];

describe('credential detectors stay quiet on realistic non-secrets', () => {
  for (const [name, text] of NEGATIVES) {
    test(name, () => assert.deepEqual(findCredentials(text), []));
  }
});

test('an AWS secret access key given apart under a key that names AWS is found, however the key is cased', () => {
  for (const key of ['aws_key', 'AwsSecret', 'AWS_SECRET_ACCESS_KEY']) {
    assert.deepEqual(findCredentials(awsSecret, { key }).map((f) => [f.detector, f.index, f.length]).slice(0, 1).map((f) => f[1]), [0], key);
  }
  assert.equal(findCredentials(awsSecret, { key: 'aws_key' })[0]!.detector, 'aws-secret-access-key');
});

describe('credential detector helpers and hostile input', () => {
  test('placeholders, references and env vars are recognised', () => {
    for (const v of ['{{ secrets.X }}', '$FOO', '${FOO}', '<your-key>', 'changeme', 'xxxxxxxx', '****', 'your-api-key', 'process.env.X', '%APPDATA%']) {
      assert.equal(isPlaceholder(v), true, v);
    }
    assert.equal(isPlaceholder('Tr0ub4dor&3x'), false);
  });

  test('entropy: a repeated character is 0 bits, random base64 is well above 4', () => {
    assert.equal(shannonEntropy('aaaaaaaa'), 0);
    assert.ok(shannonEntropy(randomBytes(48).toString('base64')) > 4);
  });

  test('a megabyte of adversarial text is scanned without pathological backtracking', () => {
    const texts = [
      'a'.repeat(1_000_000), 'a.'.repeat(500_000), `${'password'.repeat(50_000)}:`, `https://${'u'.repeat(200_000)}:${'p'.repeat(200_000)}`, 'eyJ'.repeat(300_000),
      `https://u:${'p@'.repeat(300_000)}`, 'https://u:p@'.repeat(80_000), '%41'.repeat(330_000), '%'.repeat(1_000_000), ` ${rand(39)}`.repeat(25_000),
      Buffer.from(Buffer.from('password='.repeat(80_000)).toString('base64')).toString('base64'),
      // Tens of thousands of encoded credentials, each decoded and scanned once.
      Array.from({ length: 12_000 }, () => Buffer.from(`token=${'ghp_' + rand(36)}`).toString('base64')).join(' '),
      Array.from({ length: 12_000 }, () => encodeURIComponent(`u:${rand(12)}@h`).replace(/^/, 'x://')).join(' '),
    ];
    for (const t of texts) {
      const { result, ms } = cpuMs(() => findCredentials(t));
      assert.ok(Array.isArray(result));
      assert.ok(ms < 1_500, `${t.slice(0, 12)}…: took ${Math.round(ms)} ms`);
    }
  });

  test('a megabyte of private-key headers with no end line is scanned in linear time, and each is still found', () => {
    // Each header used to start a lazy search of up to 20,000 characters for its END line: seconds per save.
    const header = ['-----BEGIN', 'PRIVATE KEY-----'].join(' ');
    const text = header.repeat(Math.floor(1_048_576 / header.length));
    const { result: findings, ms } = cpuMs(() => findCredentials(text));
    assert.equal(findings.length, Math.floor(1_048_576 / header.length));
    assert.ok(ms < 1_000, `took ${Math.round(ms)} ms`);
    const pair = `${header}\nMIIE${rand(40)}\n${['-----END', 'PRIVATE KEY-----'].join(' ')}`;
    assert.deepEqual(findCredentials(`${header} ${pair}`).map((f) => f.length), [header.length, pair.length], 'a key with its END line is one span');
  });

  test('a megabyte of access key ids (tens of thousands of findings) is scanned in linear time', () => {
    // Each finding was checked against every earlier one: quadratic in the number of findings.
    const ids = Array.from({ length: 48_000 }, () => `AKIA${rand(16, upperDigits)}`);
    const { result: findings, ms } = cpuMs(() => findCredentials(ids.join(' ')));
    assert.ok(findings.length > 47_000, String(findings.length));
    assert.ok(ms < 1_000, `took ${Math.round(ms)} ms`);
  });
});

test('the generic rule\'s documented thresholds hold at their edges: 8 characters, two classes, 3 bits of entropy', () => {
  // docs/redaction.md: at least 8 characters, at least two character classes, entropy >= 3 bits per character.
  const found = (value: string) => findCredentials(value, { key: 'password' }).length > 0;
  assert.equal(found('k9x2m4p7'), true, '8 characters, lower and digits, 8 distinct: exactly 3 bits');
  assert.equal(found('k9x2m4p'), false, '7 characters');
  assert.equal(found('k9x2k9x2'), false, 'two classes but 2 bits of entropy');
  assert.equal(found('q7w3e9r1t5'), true, '10 characters, two classes');
});
