import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { createTestDatabase, PG_URL, type TestDatabase } from '../helpers/databases.ts';
import { startServer, type RequestOptions, type ServerProcess } from '../helpers/server-process.ts';
import { assertNoCredentialLeaked, createHarness, type Harness } from '../helpers/harness.ts';
import { auditTexts, createCanaryRegistry, describeFindings } from '../helpers/canaries.ts';
import { call, codeAt, enrolTotp, login, newUser, nextStep } from '../helpers/users.ts';
import { startOidcProvider } from '../fixtures/oidc-provider.ts';

const CANARY = `canary-${randomBytes(16).toString('hex')}`;
const SECRET = 'CANARY_SECRET';
const ENVIRONMENTS = ['development', 'staging', 'production'];
const MAX_VALUE_BYTES = 65_536;
/** The most verbose level: whatever stays out of the logs at trace stays out at debug too. */
const LOG_LEVEL = 'trace';

/** A leak of any this many consecutive bytes of the canary counts: an echo truncated to a prefix is still a leak. */
const LEAK_WINDOW = 12;

interface LeakForm {
  form: string;
  needles: Buffer[];
}

/** Every slice of `text` of `size` characters, starting at multiples of `step`. */
function windows(text: string, size: number, step: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i + size <= text.length; i += step) out.push(Buffer.from(text.slice(i, i + size), 'latin1'));
  return out;
}

/**
 * The canary as it could leak, whole or in part: UTF-8 and UTF-16 text, hex (PostgreSQL dumps bytea
 * as hex), and base64/base64url at each of the three alignments the canary can have inside a longer
 * encoded value (only the groups made of canary bytes alone are predictable).
 */
function leakForms(canary: string): LeakForm[] {
  const bytes = Buffer.from(canary, 'utf8');
  const hex = bytes.toString('hex');
  const forms: LeakForm[] = [
    { form: 'utf8', needles: windows(bytes.toString('latin1'), LEAK_WINDOW, 1) },
    { form: 'utf16le', needles: windows(Buffer.from(canary, 'utf16le').toString('latin1'), LEAK_WINDOW * 2, 2) },
    { form: 'hex', needles: windows(hex, LEAK_WINDOW * 2, 2) },
    { form: 'HEX', needles: windows(hex.toUpperCase(), LEAK_WINDOW * 2, 2) },
  ];
  for (const encoding of ['base64', 'base64url'] as const) {
    for (let shift = 0; shift < 3; shift++) {
      const encoded = Buffer.concat([Buffer.alloc(shift), bytes]).toString(encoding);
      const aligned = encoded.slice(shift === 0 ? 0 : 4, Math.floor((shift + bytes.length) / 3) * 4);
      forms.push({ form: `${encoding}+${shift}`, needles: windows(aligned, (LEAK_WINDOW / 3) * 4, 4) });
    }
  }
  return forms;
}

const FORMS = leakForms(CANARY);

/** The forms in which (part of) the canary appears in the haystack. */
function leaks(haystack: Buffer | string): string[] {
  const buf = typeof haystack === 'string' ? Buffer.from(haystack, 'utf8') : haystack;
  return FORMS.filter((f) => f.needles.some((needle) => buf.includes(needle))).map((f) => f.form);
}

/** Every file under dir, by relative path, as raw bytes. */
function filesUnder(dir: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const rel of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const path = join(dir, rel);
    if (statSync(path).isFile()) files.set(rel, readFileSync(path));
  }
  return files;
}

function leaksInFiles(files: Map<string, Buffer>): string[] {
  return [...files].flatMap(([name, bytes]) => leaks(bytes).map((form) => `${name}: ${form}`));
}

/** Sends raw bytes over TCP (for requests fetch refuses to make) and returns the raw response. */
function rawHttp(address: string, payload: string): Promise<string> {
  const url = new URL(address);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.setTimeout(5000, () => socket.destroy(new Error('raw request timed out')));
    socket.end(payload);
  });
}

const valuesPath = (env: string, name = SECRET) => `/v1/secrets/${name}/values/${env}`;

interface ErrorCase {
  name: string;
  method: string;
  path: string;
  opts: RequestOptions;
  status: number;
  code: string;
}

/** Requests that carry the canary and must fail without echoing it. */
const ERROR_CASES: ErrorCase[] = [
  { name: 'an unknown field next to the value', method: 'PUT', path: valuesPath('production'), opts: { body: { value: CANARY, note: CANARY } }, status: 400, code: 'UNKNOWN_FIELD' },
  { name: 'the value inside an array', method: 'PUT', path: valuesPath('production'), opts: { body: { value: [CANARY] } }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'the value inside an object', method: 'PUT', path: valuesPath('production'), opts: { body: { value: { inner: CANARY } } }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a check-and-set that is not a number', method: 'PUT', path: valuesPath('production'), opts: { body: { value: CANARY, cas: CANARY } }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a reason over its length limit', method: 'PUT', path: valuesPath('production'), opts: { body: { value: CANARY, reason: CANARY.repeat(20) } }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'an empty value with the canary as reason', method: 'PUT', path: valuesPath('production'), opts: { body: { value: '', reason: CANARY } }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a value with a lone surrogate', method: 'PUT', path: valuesPath('production'), opts: { body: { value: `${CANARY}\ud800` } }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a value over the size limit', method: 'PUT', path: valuesPath('production'), opts: { body: { value: `${CANARY}:`.repeat(Math.ceil(MAX_VALUE_BYTES / CANARY.length)) } }, status: 413, code: 'VALUE_TOO_LARGE' },
  { name: 'a body over the body limit', method: 'PUT', path: valuesPath('production'), opts: { body: { value: CANARY.repeat(Math.ceil((MAX_VALUE_BYTES * 8) / CANARY.length)) } }, status: 413, code: 'BODY_TOO_LARGE' },
  { name: 'a write to a secret that does not exist', method: 'PUT', path: valuesPath('production', 'NO_SUCH_SECRET'), opts: { body: { value: CANARY } }, status: 404, code: 'SECRET_NOT_FOUND' },
  { name: 'a write to an environment that does not exist', method: 'PUT', path: valuesPath('qa'), opts: { body: { value: CANARY } }, status: 404, code: 'ENVIRONMENT_NOT_FOUND' },
  { name: 'a stale check-and-set', method: 'PUT', path: valuesPath('production'), opts: { body: { value: CANARY, cas: 9999 } }, status: 409, code: 'CAS_MISMATCH' },
  { name: 'unterminated JSON', method: 'PUT', path: valuesPath('production'), opts: { rawBody: `{"value":"${CANARY}` }, status: 400, code: 'MALFORMED_JSON' },
  { name: 'garbage after the value', method: 'PUT', path: valuesPath('production'), opts: { rawBody: `{"value":"${CANARY}" ${CANARY}}` }, status: 400, code: 'MALFORMED_JSON' },
  { name: 'a prototype-poisoning body', method: 'PUT', path: valuesPath('production'), opts: { rawBody: `{"value":"${CANARY}","__proto__":{"x":"${CANARY}"}}` }, status: 400, code: 'MALFORMED_JSON' },
  { name: 'a JSON string instead of an object', method: 'PUT', path: valuesPath('production'), opts: { rawBody: JSON.stringify(CANARY) }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a form-encoded body', method: 'PUT', path: valuesPath('production'), opts: { rawBody: `value=${CANARY}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { name: 'the canary as the bearer token', method: 'PUT', path: valuesPath('production'), opts: { body: { value: CANARY }, token: CANARY }, status: 401, code: 'UNAUTHENTICATED' },
  { name: 'the canary as the X-Keyhold-Token', method: 'PUT', path: valuesPath('production'), opts: { body: { value: CANARY }, token: null, headers: { 'x-keyhold-token': CANARY } }, status: 401, code: 'UNAUTHENTICATED' },
  { name: 'the canary as a version number', method: 'GET', path: `${valuesPath('production')}?version=${CANARY}`, opts: {}, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'the canary as a label', method: 'GET', path: `${valuesPath('production')}?label=${CANARY}`, opts: {}, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a rollback with the canary as check-and-set', method: 'POST', path: `${valuesPath('production')}/rollback`, opts: { body: { cas: CANARY } }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a value sent along when creating a secret', method: 'POST', path: '/v1/secrets', opts: { body: { name: 'ANOTHER_SECRET', owner: 'leak-test', value: CANARY } }, status: 400, code: 'UNKNOWN_FIELD' },
  { name: 'a value sent to an endpoint that does not exist', method: 'PATCH', path: valuesPath('production'), opts: { body: { value: CANARY } }, status: 404, code: 'ROUTE_NOT_FOUND' },
];

/** Requests too broken for fetch: the HTTP parser itself rejects them. */
const RAW_CASES: Array<{ name: string; payload: string }> = (() => {
  const body = JSON.stringify({ value: CANARY });
  const head = `PUT ${valuesPath('production')} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n`;
  return [
    { name: 'a control character in a header next to the value', payload: `${head}X-Note: ${CANARY}\x01\r\nContent-Length: ${body.length}\r\n\r\n${body}` },
    { name: 'conflicting Content-Length and Transfer-Encoding', payload: `${head}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n${body}` },
    { name: 'a broken chunk size', payload: `${head}Transfer-Encoding: chunked\r\n\r\nzz\r\n${body}\r\n0\r\n\r\n` },
  ];
})();

describeEachDialect('canary', (dialect) => {
  let database: TestDatabase;
  let server: ServerProcess;
  before(async () => {
    database = await createTestDatabase(dialect);
    server = await startServer({ dataDir: database.dataDir, databaseUrl: database.url, logLevel: LOG_LEVEL });
  });
  after(async () => {
    await server?.kill('SIGKILL');
    await database.cleanup();
  });

  test('the leak scanner finds the canary, or any 14 bytes of it, in every form it looks for', () => {
    for (const part of [CANARY, CANARY.slice(0, 14), CANARY.slice(-14), CANARY.slice(9, 23)]) {
      const text = `x${part}yz`;
      assert.deepEqual(leaks(text), ['utf8'], part);
      assert.deepEqual(leaks(Buffer.concat([randomBytes(3), Buffer.from(text, 'utf16le')])), ['utf16le'], part);
      for (const shift of [0, 1, 2]) {
        const inValue = Buffer.concat([randomBytes(shift), Buffer.from(text)]);
        for (const encoding of ['hex', 'base64', 'base64url'] as const) {
          assert.ok(leaks(`..${inValue.toString(encoding)}..`).length > 0, `${part} at shift ${shift} in ${encoding}`);
        }
        assert.ok(leaks(inValue.toString('hex').toUpperCase()).includes('HEX'), `${part} at shift ${shift} in HEX`);
      }
    }
    assert.deepEqual(leaks(`got "${CANARY.slice(0, LEAK_WINDOW)}..."`), ['utf8'], 'a truncated echo is a leak');
    assert.deepEqual(leaks(`canary-${'0'.repeat(32)} canary-test ${CANARY.slice(0, LEAK_WINDOW - 1)}`), []);
  });

  test('the canary is really stored: every version, environment, rollback, KEK rewrap and re-encrypt reads it back', async () => {
    const expected = new Map<string, Map<number, string>>(ENVIRONMENTS.map((env) => [env, new Map()]));
    const write = async (env: string, value: string) => {
      const res = await server.request('PUT', valuesPath(env), { body: { value } });
      assert.equal(res.status, 200, res.text);
      expected.get(env)!.set(res.json.version, value);
      return res.json.version as number;
    };
    const created = await server.request('POST', '/v1/secrets', { body: { name: SECRET, owner: 'leak-test' } });
    assert.equal(created.status, 201, created.text);

    for (const env of ENVIRONMENTS) {
      await write(env, CANARY);
      await write(env, `${CANARY}:${env}:2`);
      await write(env, `prefix-${env}-${CANARY}-suffix`); // the canary at another offset, for base64 alignment
    }
    // A value at the size limit, made of nothing but canaries, then rolled back.
    const big = `${CANARY};`.repeat(Math.ceil(MAX_VALUE_BYTES / CANARY.length)).slice(0, MAX_VALUE_BYTES);
    const bigVersion = await write('production', big);
    const rolledBack = await server.request('POST', `${valuesPath('production')}/rollback`, { body: {} });
    assert.equal(rolledBack.status, 200, rolledBack.text);
    assert.deepEqual([rolledBack.json.version, rolledBack.json.previousVersion], [bigVersion - 1, bigVersion]);

    const underKek1 = [...expected.values()].reduce((n, versions) => n + versions.size, 0);
    const rotated = await server.request('POST', '/v1/keys/rotate');
    assert.equal(rotated.status, 200, rotated.text);
    assert.equal(rotated.json.currentVersion, 2);
    await write('staging', `${CANARY}:under-kek-2`);
    const rewrapped = await server.request('POST', '/v1/keys/rewrap');
    assert.equal(rewrapped.status, 200, rewrapped.text);
    assert.equal(rewrapped.json.rewrapped, underKek1, 'every data key under the old KEK was rewrapped');
    assert.equal(rewrapped.json.minDecryptionVersion, 2);
    await write('development', `${CANARY}:after-rewrap`);
    const all = [...expected.values()].reduce((n, versions) => n + versions.size, 0);
    const reencrypted = await server.request('POST', '/v1/keys/reencrypt');
    assert.equal(reencrypted.status, 200, reencrypted.text);
    assert.equal(reencrypted.json.resealed, all, 'every stored value was resealed under a fresh data key');
    assert.deepEqual([reencrypted.json.currentVersion, reencrypted.json.minDecryptionVersion], [3, 3]);

    for (const [env, versions] of expected) {
      for (const [version, value] of versions) {
        const res = await server.request('GET', `${valuesPath(env)}?version=${version}`);
        assert.equal(res.status, 200, `${env} v${version}: ${res.text}`);
        assert.equal(res.json.value, value, `${env} v${version} reads back exactly`);
        assert.ok(leaks(res.text).includes('utf8'), 'a read is where the canary is supposed to appear');
      }
      const current = await server.request('GET', valuesPath(env));
      assert.equal(current.status, 200, current.text);
      const newest = Math.max(...versions.keys());
      const currentVersion = env === 'production' ? newest - 1 : newest; // production was rolled back
      assert.deepEqual([current.json.version, current.json.value], [currentVersion, versions.get(currentVersion)]);
    }
  });

  test('no error body echoes a canary carried in the request', async () => {
    for (const c of ERROR_CASES) {
      const res = await server.request(c.method, c.path, c.opts);
      assert.deepEqual([res.status, res.json?.error?.code], [c.status, c.code], `${c.name}: ${res.text.slice(0, 300)}`);
      const headers = [...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n');
      assert.deepEqual(leaks(res.text + headers), [], `${c.name}: the response must not carry the canary`);
    }
    for (const c of RAW_CASES) {
      const res = await rawHttp(server.address, c.payload);
      // These carry no credentials: the server may refuse them (401) before it reaches the malformed part (400).
      assert.match(res, /^HTTP\/1\.1 40[01] /, `${c.name}: ${res.slice(0, 200)}`);
      assert.deepEqual(leaks(Buffer.from(res, 'latin1')), [], `${c.name}: the response must not carry the canary`);
    }
    // The failed writes wrote nothing: production still ends at the version the previous test left current.
    const history = await server.request('GET', `${valuesPath('production')}/versions`);
    assert.equal(history.json.versions.length, 4);
  });

  test('neither the data files (database, WAL, shared memory) nor a database dump hold the canary', async () => {
    // While the server runs, SQLite keeps recent pages in the -wal file: scan it before a clean stop checkpoints it away.
    const live = filesUnder(database.dataDir);
    if (dialect === 'sqlite') {
      assert.ok(live.has('keyhold.db-wal'), `the WAL is there to be scanned (${[...live.keys()].join(', ')})`);
      assert.ok([...live.values()].some((bytes) => bytes.includes(SECRET)), 'the scanned files hold the secret (its name is plaintext)');
    }
    assert.deepEqual(leaksInFiles(live), [], 'data files while running');

    assert.deepEqual(await server.stop(), { code: 0, signal: null });
    const stopped = filesUnder(database.dataDir);
    if (dialect === 'sqlite') assert.ok(stopped.get('keyhold.db')?.includes(SECRET), 'the database file holds the secret');
    assert.deepEqual(leaksInFiles(stopped), [], 'data files after a clean stop');

    if (dialect === 'postgres') {
      const dump = (await promisify(execFile)('pg_dump', [`--schema=${database.schema}`, PG_URL], {
        encoding: 'buffer', maxBuffer: 256 * 1024 * 1024,
      })).stdout;
      assert.ok(dump.includes('secret_versions') && dump.includes(SECRET), 'the dump holds the secret (its name is plaintext)');
      assert.deepEqual(leaks(dump), [], 'pg_dump of the schema');
    }
  });

  test('nothing the server printed on stdout or stderr contains the canary, even at trace level', async () => {
    await server.stop();
    const logs = server.logs();
    assert.match(logs, /"msg":"keyhold listening"/);
    assert.match(logs, /"msg":"refused a malformed or slow request"/, 'the broken HTTP requests were logged');
    assert.deepEqual(leaks(logs), []);
  });

  test('no raw audit event or checkpoint holds the canary or the root token, read column by column', async () => {
    await server.stop();
    const canaries = createCanaryRegistry();
    canaries.add('secret value', CANARY);
    canaries.add('root token', server.token);
    const storage = await database.open();
    try {
      const texts = await auditTexts(storage);
      assert.ok(texts.some((t) => t.text.includes(SECRET)), 'the events of this suite are there to be scanned');
      const findings = canaries.findIn(texts);
      assert.equal(findings.length, 0, describeFindings(findings));
    } finally {
      await storage.close();
    }
  });
});

/** Distinctive values that escaping would hide from a naive search: quotes, backslashes, unicode, newlines. */
const tag = randomBytes(6).toString('hex');
const HOSTILE_VALUES = [
  `canary-plain-${tag}`,
  `canary-"quoted"-${tag}`,
  `canary-back\\slash\\${tag}`,
  `canary-ünïcødé-✓-日本-${tag}`,
  `canary-line1\nline2\r\n\t-${tag}`,
  `canary-{"json":"in","a":"value\\"${tag}"}`,
];
const HOSTILE_PASSWORD = `pässword "quoted" \\ back\nline-${tag}`;

/**
 * The whole credential traffic of one tenant through the in-process app: users, sessions, TOTP,
 * machines and their tokens, values written, read, rolled back and destroyed, refusals and errors,
 * and the audit exports. The harness registers every credential as it passes; the last test scans
 * every raw audit row, log line, error body and export for all of them.
 */
describeEachDialect('canaries across the whole traffic of a tenant', (dialect) => {
  let h: Harness;
  const exports: Array<{ where: string; text: string }> = [];
  before(async () => {
    h = await createHarness(dialect);
  });
  after(async () => {
    await h?.close();
  });

  const put = (token: string, name: string, env: string, value: unknown) =>
    h.app.inject({ method: 'PUT', url: `/v1/secrets/${name}/values/${env}`, headers: { authorization: `Bearer ${token}` }, payload: { value } as object });

  test('secret values with quotes, backslashes, unicode and newlines are written, read, rolled back and destroyed', async () => {
    const created = await call(h, 'POST', '/v1/secrets', { token: h.rootToken, body: { name: 'CANARY_HOSTILE', owner: 'leak-test' } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    for (const value of HOSTILE_VALUES) assert.equal((await put(h.rootToken, 'CANARY_HOSTILE', 'production', value)).statusCode, 200);
    const read = await h.app.inject({ method: 'GET', url: '/v1/secrets/CANARY_HOSTILE/values/production?version=4', headers: { authorization: `Bearer ${h.rootToken}` } });
    assert.equal(JSON.parse(read.body).value, HOSTILE_VALUES[3]);
    const rolled = await call(h, 'POST', '/v1/secrets/CANARY_HOSTILE/values/production/rollback', { token: h.rootToken, body: {} });
    assert.equal(rolled.status, 200, JSON.stringify(rolled.body));
    // Destroyed versions can no longer be decrypted at close: only registration at write time keeps them canaries.
    const destroyed = await call(h, 'POST', '/v1/secrets/CANARY_HOSTILE/destroy', { token: h.rootToken, body: { environment: 'production', versions: [1, 2, 3] } });
    assert.equal(destroyed.status, 200, JSON.stringify(destroyed.body));
    assert.equal((await h.storage.db.selectFrom('secret_versions').select('version').where('ciphertext', 'is', null).execute()).length, 3);
  });

  test('refused writes and reads carry the canaries without echoing them', async () => {
    const cases = [
      { name: 'an unknown secret', res: await put(h.rootToken, 'NO_SUCH_SECRET', 'production', HOSTILE_VALUES[1]), status: 404 },
      { name: 'an unknown environment', res: await put(h.rootToken, 'CANARY_HOSTILE', 'qa', HOSTILE_VALUES[2]), status: 404 },
      { name: 'a wrong bearer token', res: await put(`kh_${randomBytes(32).toString('base64url')}`, 'CANARY_HOSTILE', 'production', HOSTILE_VALUES[4]), status: 401 },
      { name: 'a value of the wrong type', res: await put(h.rootToken, 'CANARY_HOSTILE', 'production', { inner: HOSTILE_VALUES[5] }), status: 400 },
      { name: 'a destroyed version', res: await h.app.inject({ method: 'GET', url: '/v1/secrets/CANARY_HOSTILE/values/production?version=1', headers: { authorization: `Bearer ${h.rootToken}` } }), status: 410 },
    ];
    for (const c of cases) assert.ok(c.res.statusCode >= 400, `${c.name}: ${c.res.statusCode}`);
    assert.deepEqual(cases.slice(0, 4).map((c) => c.res.statusCode), cases.slice(0, 4).map((c) => c.status));
  });

  test('users log in with a hostile password, enrol TOTP with a ticket, step up, and fail with wrong tickets, passwords and codes', async () => {
    const user = await newUser(h, 'canary', HOSTILE_PASSWORD);
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: user.id, role: 'viewer' });
    const first = await login(h, { username: user.username, password: HOSTILE_PASSWORD });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const noTicket = await call(h, 'POST', '/v1/auth/totp/enroll', { token: first.body.token, body: { ticket: `khe_${randomBytes(32).toString('base64url')}` } });
    assert.deepEqual([noTicket.status, noTicket.body.error?.code], [403, 'TOTP_TICKET_INVALID'], 'a wrong enrolment ticket is refused');
    const secret = await enrolTotp(h, first.body.token);
    const wrongPassword = await login(h, { username: user.username, password: `${HOSTILE_PASSWORD}-wrong` });
    assert.equal(wrongPassword.status, 401);
    const wrongCode = await login(h, { username: user.username, password: HOSTILE_PASSWORD, totp: codeAt(secret, h.clock.now() + 10 * 60_000) });
    assert.equal(wrongCode.status, 401);
    const second = await login(h, { username: user.username, password: HOSTILE_PASSWORD, totp: codeAt(secret, h.clock.now()) });
    assert.equal(second.status, 200, JSON.stringify(second.body));
    nextStep(h);
    const stepUp = await call(h, 'POST', '/v1/auth/step-up', { token: second.body.token, body: { code: codeAt(secret, h.clock.now()) } });
    assert.equal(stepUp.status, 200, JSON.stringify(stepUp.body));
    const replay = await call(h, 'POST', '/v1/auth/step-up', { token: second.body.token, body: { code: codeAt(secret, h.clock.now()) } });
    assert.deepEqual([replay.status, replay.body.error?.code], [400, 'TOTP_INVALID'], 'a used code is refused');
    // A viewer may not read a value: a denial event, with the session token as credential.
    const denied = await h.app.inject({ method: 'GET', url: '/v1/secrets/CANARY_HOSTILE/values/production', headers: { authorization: `Bearer ${second.body.token}` } });
    assert.equal(denied.statusCode, 403, denied.body);
    const changed = await call(h, 'POST', '/v1/auth/password', { token: second.body.token, body: { current: HOSTILE_PASSWORD, new: `${HOSTILE_PASSWORD}-new` } });
    assert.equal(changed.status, 200, JSON.stringify(changed.body));
  });

  test('machines exchange their client secret for tokens, and wrong secrets are refused', async () => {
    const machine = await call(h, 'POST', '/v1/machines', { token: h.rootToken, body: { name: 'canary-bot', kind: 'client_secret' } });
    assert.equal(machine.status, 201, JSON.stringify(machine.body));
    const exchange = (secret: string) => call(h, 'POST', '/v1/auth/token', { body: { grant_type: 'client_credentials', client_id: machine.body.clientId, client_secret: secret } });
    const wrong = await exchange(`khcs_${randomBytes(32).toString('base64url')}`);
    assert.equal(wrong.status, 401, JSON.stringify(wrong.body));
    const ok = await exchange(machine.body.clientSecret);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const denied = await h.app.inject({ method: 'GET', url: '/v1/secrets/CANARY_HOSTILE/values/production', headers: { authorization: `Bearer ${ok.body.access_token}` } });
    // No grant at all: the machine cannot even list the secret, so it is answered as a miss.
    assert.equal(denied.statusCode, 404, denied.body);
    const rotated = await call(h, 'POST', `/v1/machines/${machine.body.id}/rotate-secret`, { token: h.rootToken });
    assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
    assert.equal((await exchange(machine.body.clientSecret)).status, 401, 'the old secret no longer works');
  });

  test('machines exchange JWTs from their identity provider, and expired, forged or unbound ones are refused', async () => {
    const idp = await startOidcProvider();
    try {
      const audience = 'https://keyhold.canary.example';
      const oidc = { issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience, subject: 'canary-ci' };
      const machine = await call(h, 'POST', '/v1/machines', { token: h.rootToken, body: { name: 'canary-federated', kind: 'oidc', oidc } });
      assert.equal(machine.status, 201, JSON.stringify(machine.body));
      const exchange = (assertion: string) => call(h, 'POST', '/v1/auth/token', { body: { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', client_id: machine.body.clientId, assertion } });
      const now = h.clock.now();
      const refused = [
        await idp.sign({ aud: audience, sub: 'canary-ci', exp: Math.floor(now / 1000) - 600 }, now - 3_600_000),
        await idp.sign({ aud: audience, sub: 'canary-ci' }, now, await idp.unpublishedKey()),
        await idp.sign({ aud: audience, sub: 'someone-else' }, now),
      ];
      for (const jwt of refused) assert.equal((await exchange(jwt)).status, 401, 'refused');
      const ok = await exchange(await idp.sign({ aud: audience, sub: 'canary-ci' }, now));
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
    } finally {
      await idp.close();
    }
  });

  test('the audit exports (JSON, CSV, events, checkpoints) are taken', async () => {
    await h.services.checkpoints.checkpoint();
    for (const url of ['/v1/audit/export?format=json', '/v1/audit/export?format=csv', '/v1/audit/events?limit=1000', '/v1/audit/checkpoints']) {
      const res = await h.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${h.rootToken}` } });
      assert.equal(res.statusCode, 200, `${url}: ${res.body.slice(0, 200)}`);
      exports.push({ where: `the export ${url}`, text: res.body });
    }
    assert.match(exports[0]!.text, /auth\.login/, 'the export holds the traffic');
  });

  test('no canary of any kind is in any audit event or checkpoint, export, log line or error body', async () => {
    const counts = h.canaries.counts();
    for (const kind of ['secret value', 'password', 'session token', 'machine token', 'root token', 'client secret', 'TOTP secret', 'TOTP code', 'unseal share', 'TOTP enrolment ticket', 'JWT assertion'] as const) {
      assert.ok((counts[kind] ?? 0) > 0, `the traffic registered a ${kind}`);
    }
    assert.ok(h.errorBodies.length >= 8, `the error bodies were captured (${h.errorBodies.length})`);
    assert.ok(h.logs.lines.length > 0, 'the server logged');
    const findings = h.canaries.findIn(exports);
    assert.equal(findings.length, 0, describeFindings(findings));
    await assertNoCredentialLeaked(h);
  });
});
