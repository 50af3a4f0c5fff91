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
  for (const err of [Object.assign(new Error('deadlock'), { code: '40P01', severity: 'ERROR' }), Object.assign(new Error('x'), { code: '22021' })]) {
    assert.equal(toErrorBody(err, request).status, 500);
  }
});
