import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyRequest } from 'fastify';
import { toErrorBody } from './errors.ts';

const request = { id: 'req-1', log: { error: () => {} } } as unknown as FastifyRequest;

test("PostgreSQL's data exceptions (class 22) are the caller's input: 400 VALIDATION_FAILED, never 500", () => {
  for (const code of ['22021', '22P05', '22003', '22P02']) {
    const err = Object.assign(new Error('invalid byte sequence for encoding "UTF8": 0x00'), { code, severity: 'ERROR' });
    const { status, body } = toErrorBody(err, request);
    assert.deepEqual([status, body.error.code], [400, 'VALIDATION_FAILED'], code);
    assert.doesNotMatch(body.error.message, /0x00|UTF8/, 'the driver message is not passed on');
  }
  // Other database errors stay internal; so does a class-22 code on something that is not a driver error.
  for (const err of [Object.assign(new Error('disk full'), { code: '53100', severity: 'ERROR' }), Object.assign(new Error('x'), { code: '22021' })]) {
    assert.equal(toErrorBody(err, request).status, 500);
  }
});

test('a transaction that lost to a concurrent one (a PostgreSQL deadlock, serialization failure or lock timeout, SQLite busy) is 409 TRANSACTION_CONFLICT: retry', () => {
  for (const err of [
    Object.assign(new Error('deadlock detected'), { code: '40P01', severity: 'ERROR' }),
    Object.assign(new Error('canceling statement due to lock timeout'), { code: '55P03', severity: 'ERROR' }),
    Object.assign(new Error('could not serialize access'), { code: '40001', severity: 'ERROR' }),
    Object.assign(new Error('database is locked'), { code: 'ERR_SQLITE_ERROR', errcode: 5 }),
  ]) {
    const { status, body } = toErrorBody(err, request);
    assert.deepEqual([status, body.error.code], [409, 'TRANSACTION_CONFLICT'], err.message);
    assert.doesNotMatch(body.error.message, /deadlock|serialize|locked|lock timeout/, 'the driver message is not passed on');
  }
});

test('a statement PostgreSQL cancelled (57014, its statement timeout) is 503 DATABASE_TIMEOUT, never a 500, and is logged as a warning', () => {
  const warnings: unknown[] = [];
  const errors: unknown[] = [];
  const logging = { id: 'req-2', log: { warn: (...a: unknown[]) => warnings.push(a), error: (...a: unknown[]) => errors.push(a) } } as unknown as FastifyRequest;
  const err = Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014', severity: 'ERROR' });
  const { status, body } = toErrorBody(err, logging);
  assert.deepEqual([status, body.error.code, body.error.requestId], [503, 'DATABASE_TIMEOUT', 'req-2']);
  assert.doesNotMatch(body.error.message, /canceling/, 'the driver message is not passed on');
  assert.equal(warnings.length, 1, 'operators see the database is slow');
  assert.equal(errors.length, 0, 'not an unhandled error');
});

test('any other error is 500 INTERNAL naming only the request id: its own message (a path, a query, a value) is logged, never sent', () => {
  const logged: unknown[] = [];
  const logging = { id: 'req-3', log: { error: (...a: unknown[]) => logged.push(a) } } as unknown as FastifyRequest;
  const err = new Error('ENOENT /var/lib/keyhold/unseal.key: insert into secret_versions values ($1) [hunter2-value]');
  const { status, body } = toErrorBody(err, logging);
  assert.deepEqual([status, body.error.code, body.error.requestId], [500, 'INTERNAL', 'req-3']);
  assert.doesNotMatch(JSON.stringify(body), /ENOENT|keyhold\/|secret_versions|hunter2/);
  assert.deepEqual(logged, [[{ err }, 'unhandled error']], 'the whole error goes to the log');
});
