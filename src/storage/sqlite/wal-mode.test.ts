import { test } from 'node:test';
import assert from 'node:assert/strict';
import { enableWal } from './wal-mode.ts';

const busy = () => Object.assign(new Error('database is locked'), { code: 'ERR_SQLITE_ERROR', errcode: 5 });

test('the switch to WAL is tried again while another connection holds the new file (SQLite answers busy there without its busy handler)', () => {
  let calls = 0;
  enableWal(() => {
    if (++calls < 3) throw busy();
  }, 5_000);
  assert.equal(calls, 3);
});

test('a busy file past the timeout, or any other error at once, is thrown', () => {
  let calls = 0;
  const t0 = Date.now();
  assert.throws(() => enableWal(() => {
    calls++;
    throw busy();
  }, 100), /database is locked/);
  assert.ok(Date.now() - t0 >= 100 && calls > 1, `gave up after ${Date.now() - t0} ms and ${calls} tries`);
  calls = 0;
  assert.throws(() => enableWal(() => {
    calls++;
    throw Object.assign(new Error('disk I/O error'), { code: 'ERR_SQLITE_ERROR', errcode: 10 });
  }, 5_000), /disk I\/O error/);
  assert.equal(calls, 1);
});
