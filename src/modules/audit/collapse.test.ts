import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCollapser, type AuditListItem } from './collapse.ts';
import type { AuditEvent } from './event.ts';

const denial = (seq: number, sourceIp: string, time = 1_000 + seq): AuditEvent => ({
  seq, id: `e${seq}`, time, tenantId: 't', actor: { type: 'user', id: 'u' }, action: 'auth.login', resource: { type: 'user', id: 'u', name: null },
  environment: null, secretVersion: null, outcome: 'denied', reason: 'INVALID_CREDENTIALS', context: { sourceIp, requestId: `r${seq}` }, prevHash: '', hash: '',
});

function fold(events: AuditEvent[]): AuditListItem[] {
  const c = createCollapser();
  const items = events.map((e) => c.push(e)).filter((i) => i !== null);
  const last = c.flush();
  return last ? [...items, last] : items;
}

test('identical denials from one address fold into one item; from another address they stay apart', () => {
  const items = fold([denial(1, '10.0.0.1'), denial(2, '10.0.0.1'), denial(3, '10.0.0.2'), denial(4, '10.0.0.2'), denial(5, '10.0.0.1')]);
  assert.deepEqual(items.map((i) => [i.seq, i.repeat, i.context.sourceIp]), [[1, 2, '10.0.0.1'], [3, 2, '10.0.0.2'], [5, 1, '10.0.0.1']]);
});

test('a denial more than a minute after the first of its run starts a new item', () => {
  assert.deepEqual(fold([denial(1, 'a', 0), denial(2, 'a', 60_000), denial(3, 'a', 60_001)]).map((i) => i.repeat), [2, 1]);
});

test('denials that differ in anything but their request id, time and place in the log stay apart', () => {
  const base = denial(1, '10.0.0.1');
  const variants: Array<[string, Partial<AuditEvent>]> = [
    ['another revoked credential', { context: { ...base.context, credentialId: 'cred-b', credentialState: 'revoked' } }],
    ['another user agent', { context: { ...base.context, userAgent: 'curl/8' } }],
    ['another deciding policy', { context: { ...base.context, policies: 'tenant:deny-nights' } }],
    ['another version', { secretVersion: 2 }],
  ];
  for (const [what, change] of variants) {
    const first = { ...base, context: { ...base.context, credentialId: 'cred-a', credentialState: 'revoked', userAgent: 'curl/7', policies: 'builtin' }, secretVersion: 1 };
    const second: AuditEvent = { ...first, ...change, seq: 2, id: 'e2', time: first.time + 1, context: { ...first.context, ...change.context, requestId: 'r2' } };
    assert.deepEqual(fold([first, second]).map((i) => i.repeat), [1, 1], what);
  }
  const again = { ...base, seq: 2, id: 'e2', time: base.time + 1, context: { ...base.context, requestId: 'r2' } };
  assert.deepEqual(fold([base, again]).map((i) => i.repeat), [2], 'only the request id differs: one item');
});
