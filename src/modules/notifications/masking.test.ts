import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRedactor } from '../redaction/index.ts';
import { createMaskingNotifier, WITHHELD_BODY } from './masking.ts';
import type { Notification } from './notifier.ts';

const VALUE = 'sk_live_pasted-into-a-justification';
const note: Notification = {
  type: 'escrow.request-denied', tenantId: 't1', severity: 'info', recipients: [{ kind: 'user', id: 'u1' }],
  subject: `Denied: reveal of STRIPE_KEY (${VALUE})`, body: `Denied by alice: you pasted ${Buffer.from(VALUE).toString('base64')} and ${VALUE}`,
  resource: { type: 'access-request', id: 'r1' },
};

test('a value of the tenant typed into a notification reaches the channels masked, in every encoding the redactor knows', async () => {
  const sent: Notification[] = [];
  const asked: string[] = [];
  const n = createMaskingNotifier({ notify: async (x) => void sent.push(x) }, async (tenantId) => {
    asked.push(tenantId);
    const r = createRedactor([VALUE]);
    return (text) => r.redact(text);
  });
  await n.notify(note);
  assert.deepEqual(asked, ['t1'], "the notification's own tenant's values");
  assert.equal(sent[0]!.subject, 'Denied: reveal of STRIPE_KEY ([REDACTED])');
  assert.equal(sent[0]!.body, 'Denied by alice: you pasted [REDACTED] and [REDACTED]');
  assert.deepEqual({ ...sent[0], subject: note.subject, body: note.body }, note, 'nothing else changes');
});

test('when the values cannot be had (sealed), the body is withheld and the failure reported, never sent unchecked', async () => {
  const sent: Notification[] = [];
  const errors: unknown[] = [];
  const n = createMaskingNotifier({ notify: async (x) => void sent.push(x) }, async () => {
    throw new Error('SEALED');
  }, (err) => errors.push(err));
  await n.notify({ ...note, subject: 'Denied: reveal of STRIPE_KEY' });
  assert.equal(sent[0]!.body, WITHHELD_BODY);
  assert.equal(errors.length, 1);
});
