import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, LogCapture, type Harness } from '../../../test/helpers/harness.ts';
import { createHttpApp } from '../../main/compose.ts';
import { createLogger } from '../../platform/logger.ts';
import { createKnownValues, createRedactor, logLineRedactor } from './index.ts';

const VALUE = 'xoxb-2048/log+canary=Zq9 ü';
const b64 = (v: string) => Buffer.from(v).toString('base64');
/** [encoding, how it appears in the log, what must not appear]. */
const ENCODINGS: Array<[string, string, string]> = [
  ['raw', VALUE, VALUE],
  ['base64', b64(VALUE), b64(VALUE)],
  ['base64url', Buffer.from(VALUE).toString('base64url'), Buffer.from(VALUE).toString('base64url')],
  ['hex', Buffer.from(VALUE).toString('hex'), Buffer.from(VALUE).toString('hex')],
  ['HEX', Buffer.from(VALUE).toString('hex').toUpperCase(), Buffer.from(VALUE).toString('hex').toUpperCase()],
  ['url-encoded', `https://api.example.com/?key=${encodeURIComponent(VALUE)}&x=1`, encodeURIComponent(VALUE)],
  ['form-encoded', new URLSearchParams({ v: VALUE, w: 'x' }).toString(), new URLSearchParams({ v: VALUE }).toString().slice(2)],
  ['JSON inside a string', JSON.stringify({ token: VALUE }), JSON.stringify(VALUE).slice(1, -1)],
  ['HTTP Basic', `Basic ${b64(`bot:${VALUE}`)}`, b64(`bot:${VALUE}`).slice(4, 30)],
];

function capturedLogger() {
  const known = createKnownValues();
  const logs = new LogCapture();
  const logger = createLogger({ level: 'info', destination: logs, filterLine: logLineRedactor(known) });
  return { known, logs, logger };
}

describe("Keyhold's own log lines pass through known-value redaction", () => {
  for (const [name, form, secret] of ENCODINGS) {
    test(`${name}: in the message string, a nested field, a key, and an Error's message and stack`, () => {
      const { known, logs, logger } = capturedLogger();
      known.add(VALUE);
      logger.info(`calling upstream with ${form}`);
      logger.warn({ request: { headers: { 'x-api': form }, note: [form] }, [form]: 1 }, 'nested');
      logger.error({ err: new Error(`upstream refused ${form}`) }, 'failed');
      logger.child({ reqId: 'r1' }).info({ detail: form }, 'child logger');
      const text = logs.text();
      assert.equal(logs.lines.length, 4);
      assert.ok(!text.includes(secret) && !text.includes(JSON.stringify(secret).slice(1, -1)), `${name} leaked: ${text}`);
      for (const line of logs.lines) {
        const parsed = JSON.parse(line);
        assert.ok(line.includes('[REDACTED]'), `every line is masked: ${line}`);
        assert.equal(typeof parsed.level, 'number', 'lines stay valid JSON');
      }
      const err = JSON.parse(logs.lines[2]!).err;
      assert.ok(!err.message.includes(secret) && !err.stack.includes(secret) && err.stack.includes('[REDACTED]'));
    });
  }

  test('a short value is masked where it appears as a string or as a bare JSON number, and the line stays JSON', () => {
    const { known, logs, logger } = capturedLogger();
    known.add('48151');
    logger.info({ pin: '48151', count: 48151, other: 4815 }, 'pin 48151 used');
    const line = JSON.parse(logs.lines[0]!);
    assert.deepEqual([line.pin, line.count, line.other, line.msg], ['[REDACTED]', '[REDACTED]', 4815, 'pin [REDACTED] used']);
  });

  test('a known value that is not valid Unicode (a rejected write) neither crashes the logger nor leaks', () => {
    const { known, logs, logger } = capturedLogger();
    known.add('canary\ud800-lone-surrogate');
    assert.doesNotThrow(() => logger.info('client error canary\ud800-lone-surrogate'));
    assert.equal(JSON.parse(logs.lines[0]!).msg, 'client error [REDACTED]');
  });

  test('nothing known: lines are written untouched; seal-style clear() forgets everything', () => {
    const { known, logs, logger } = capturedLogger();
    logger.info(`plain ${VALUE}`);
    known.add(VALUE);
    logger.info(`known ${VALUE}`);
    known.clear();
    logger.info(`cleared ${VALUE}`);
    assert.deepEqual(logs.lines.map((l) => JSON.parse(l).msg), [`plain ${VALUE}`, 'known [REDACTED]', `cleared ${VALUE}`]);
  });

  test('values in a tenant snapshot and values seen since are masked together, spans joined across them', () => {
    const { known, logs, logger } = capturedLogger();
    known.setTenant('t1', createRedactor(['abcdefgh']), new Set(['abcdefgh']));
    known.add('efghijkl');
    logger.info('joined abcdefghijkl!');
    assert.equal(JSON.parse(logs.lines[0]!).msg, 'joined [REDACTED]!');
  });
});

describeEachDialect('the server logger knows values the value service writes and reads', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('a value written (or read) through the service is masked in a later server log line, and forgotten on seal', async () => {
    const logs = new LogCapture();
    const app = await createHttpApp(h.services, {
      logger: createLogger({ level: 'info', destination: logs, filterLine: logLineRedactor(h.services.knownValues) }), bodyLimit: 65_536,
    });
    await h.services.secrets.create(h.ctx, { name: 'LOG_CANARY', owner: 'ops' });
    await h.services.values.write(h.ctx, 'LOG_CANARY', 'staging', { value: VALUE });
    app.log.error({ err: new Error(`boom with ${VALUE}`) }, `unhandled ${Buffer.from(VALUE).toString('base64')}`);
    await app.close();
    assert.ok(logs.text().length > 0);
    assert.ok(!logs.text().includes(VALUE) && !logs.text().includes(Buffer.from(VALUE).toString('base64')), logs.text());
    h.services.seal.seal();
    assert.equal(h.services.knownValues.redactor().size, 0);
    for (const share of h.shares.slice(0, 2)) await h.services.system.unseal(share);
    await h.services.values.read(h.ctx, 'LOG_CANARY', 'staging');
    assert.equal(h.services.knownValues.redactor().redact(VALUE), '[REDACTED]', 'a read makes it known again');
  });

  test('a refused write does not leave its value in memory (refused writes cannot fill the registry)', async () => {
    const refused = 'refused-write-value-Qx81';
    await assert.rejects(h.services.values.write(h.ctx, 'NO_SUCH_SECRET', 'staging', { value: refused }), { code: 'SECRET_NOT_FOUND' });
    assert.equal(h.services.knownValues.redactor().redact(refused), refused);
  });
});
