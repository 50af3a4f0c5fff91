import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createInvalidationBus, parseInvalidation, type Invalidation } from './bus.ts';
import type { Notifications } from '../../storage/postgres/notifications.ts';

const SELF = 'node-self';

test('a message from another node is read back as sent; one naming this node is its own echo and is dropped', () => {
  const sent: Invalidation[] = [{ kind: 'token', id: 't-1' }, { kind: 'principal', id: 'm-1' }, { kind: 'authz', tenantId: 'ten-1' }, { kind: 'values', tenantId: 'ten-1' }, { kind: 'keys', tenantId: 'ten-1' }];
  for (const m of sent) {
    assert.deepEqual(parseInvalidation(JSON.stringify({ node: 'node-other', ...m }), SELF), m);
    assert.equal(parseInvalidation(JSON.stringify({ node: SELF, ...m }), SELF), null);
  }
});

test('anything else on the channel (anyone may NOTIFY on the database) is ignored, never thrown on', () => {
  const junk = [
    '', 'not json', 'null', '42', '"token"', '[]', '{}',
    JSON.stringify({ kind: 'token', id: 't' }),
    JSON.stringify({ node: 'n', kind: 'unseal', id: 't' }),
    JSON.stringify({ node: 'n', kind: 'token' }),
    JSON.stringify({ node: 'n', kind: 'token', id: 7 }),
    JSON.stringify({ node: 'n', kind: 'token', id: '' }),
    JSON.stringify({ node: 'n', kind: 'token', id: 'x'.repeat(201) }),
    JSON.stringify({ node: 'n', kind: 'authz', id: 'ten-1' }),
    JSON.stringify({ node: 'n', kind: 'values', name: 'DB_PASSWORD' }),
    JSON.stringify({ node: 'n', kind: 'authz', tenantId: { $ne: null } }),
    JSON.stringify({ node: 'n'.repeat(201), kind: 'token', id: 't' }),
    JSON.stringify({ node: 'n', kind: '__proto__', id: 't' }),
  ];
  for (const payload of junk) assert.equal(parseInvalidation(payload, SELF), null, payload);
  // Extra fields are not carried along.
  assert.deepEqual(parseInvalidation(JSON.stringify({ node: 'n', kind: 'token', id: 't', value: 'sk_live_x' }), SELF), { kind: 'token', id: 't' });
});

test('the bus hands other nodes\' messages and gaps to every subscriber, and a failed publish goes to onError, not the caller', async () => {
  let handlers: Parameters<Notifications['listen']>[0] | null = null;
  const published: string[] = [];
  const notifications: Notifications = {
    publish: async (payload) => {
      published.push(payload);
      if (payload.includes('fail')) throw new Error('connection refused');
    },
    listen: (h) => void (handlers = h),
    close: async () => {},
  };
  const errors: unknown[] = [];
  const bus = createInvalidationBus({ notifications, onError: (err) => void errors.push(err) });
  const seen: Array<Invalidation | 'gap'> = [];
  bus.subscribe({ onMessage: (m) => void seen.push(m), onGap: () => void seen.push('gap') });
  bus.subscribe({ onMessage: (m) => void seen.push(m), onGap: () => void seen.push('gap') });
  bus.start();
  assert.ok(handlers, 'start listens');
  const h = handlers as Parameters<Notifications['listen']>[0];
  h.onGap();
  bus.publish({ kind: 'token', id: 'mine' });
  // Its own message comes back over the channel and is dropped; another node's is delivered to both subscribers.
  h.onMessage(published[0]!);
  h.onMessage(JSON.stringify({ node: 'other', kind: 'authz', tenantId: 'ten-9' }));
  h.onMessage('garbage');
  assert.deepEqual(seen, ['gap', 'gap', { kind: 'authz', tenantId: 'ten-9' }, { kind: 'authz', tenantId: 'ten-9' }]);
  bus.publish({ kind: 'token', id: 'fail' });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(errors.length, 1);
  const [err] = errors as Error[];
  assert.match(err!.message, /could not tell the other nodes of a change \(they fall back to their caches' time bounds\): connection refused/);
  assert.equal((err!.cause as Error).message, 'connection refused');
  h.onError(new Error('terminating connection due to administrator command'));
  assert.match((errors[1] as Error).message, /^not listening for the other nodes' changes, reconnecting .*: terminating connection/);
});

test('without notifications (SQLite: one node) publishing goes nowhere and starting listens to nothing', () => {
  const bus = createInvalidationBus({ notifications: null, onError: () => assert.fail('no error expected') });
  bus.subscribe({ onMessage: () => assert.fail('no message expected'), onGap: () => assert.fail('no gap expected') });
  bus.start();
  bus.publish({ kind: 'authz', tenantId: 't' });
});

test('a subscriber that throws does not keep the next one from dropping its cache; the error is reported', () => {
  let handlers: Parameters<Notifications['listen']>[0] | null = null;
  const notifications: Notifications = { publish: async () => {}, listen: (h) => void (handlers = h), close: async () => {} };
  const errors: unknown[] = [];
  const bus = createInvalidationBus({ notifications, onError: (err) => void errors.push(err) });
  const dropped: string[] = [];
  bus.subscribe({ onMessage: () => { throw new Error('broken subscriber'); }, onGap: () => { throw new Error('broken subscriber'); } });
  bus.subscribe({ onMessage: (m) => void dropped.push(m.kind), onGap: () => void dropped.push('all') });
  bus.start();
  const h = handlers as unknown as Parameters<Notifications['listen']>[0];
  h.onMessage(JSON.stringify({ node: 'other', kind: 'token', id: 't' }));
  h.onGap();
  assert.deepEqual(dropped, ['token', 'all']);
  assert.equal(errors.length, 2);
});
