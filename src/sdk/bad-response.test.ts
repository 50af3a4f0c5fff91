import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createManualClock } from '../platform/clock.ts';
import { createKeyhold, isKeyholdError } from './index.ts';

// A server that is not Keyhold (or a broken one): answers each route with whatever body the test sets.
let server: Server;
let addr: string;
let valueBody = '';
let versionsBody = '';

describe('the SDK given bad responses', () => {
  before(async () => {
    server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(req.url === '/v1/secrets/versions' ? versionsBody : valueBody);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    addr = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  async function badResponse(p: Promise<unknown>, what: string): Promise<void> {
    await assert.rejects(p, (err) => isKeyholdError(err, 'BAD_RESPONSE') && err.status === 200 && !err.message.includes('s3cret'), what);
  }

  test('a value read answered with something that is not a value is BAD_RESPONSE, never a TypeError or a non-string value', async () => {
    for (const body of ['{}', 'null', '[]', '"s3cret"', '{"value":5,"version":1}', '{"value":"s3cret"}', '{"value":"s3cret","version":"1"}',
      '{"value":"s3cret","version":1.5}', '{"value":null,"version":1}', 'not json']) {
      valueBody = body;
      const keyhold = createKeyhold({ addr, token: 'kh_x', environment: 'production', env: {} });
      await badResponse(keyhold.get('A'), body);
      keyhold.close();
    }
  });

  test('a version check answered with something that is not a version map is BAD_RESPONSE, and the cached value is not served', async () => {
    const clock = createManualClock(1_000_000);
    for (const body of ['{}', 'null', '{"versions":null}', '{"versions":[1]}', '{"versions":{"A":"1"}}', '{"versions":{"A":-1}}', '{"versions":{"A":{}}}', 'not json']) {
      valueBody = '{"value":"s3cret","version":1}';
      const keyhold = createKeyhold({ addr, token: 'kh_x', environment: 'production', env: {}, clock, refreshMs: 1000 });
      assert.equal(await keyhold.get('A'), 's3cret');
      versionsBody = body;
      clock.advance(1001);
      await badResponse(keyhold.get('A'), body);
      keyhold.close();
    }
  });

  test('a well-formed version check still confirms the cached value', async () => {
    const clock = createManualClock(1_000_000);
    valueBody = '{"value":"s3cret","version":1}';
    versionsBody = '{"versions":{"A":1}}';
    const keyhold = createKeyhold({ addr, token: 'kh_x', environment: 'production', env: {}, clock, refreshMs: 1000 });
    assert.equal(await keyhold.get('A'), 's3cret');
    clock.advance(1001);
    valueBody = '{}';
    assert.equal(await keyhold.get('A'), 's3cret');
    keyhold.close();
  });
});
