import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startSmtpServer } from '../../../../test/fixtures/smtp-server.ts';
import type { Notification, Recipient } from '../notifier.ts';
import { createRecipientResolver, type PeopleDirectory, type RecipientResolver } from '../recipients.ts';
import { createSmtpNotifier, UNDISCLOSED } from './index.ts';

/** The SMTP channel and its resolver port with a fake directory: who is mailed, and where their addresses go. */

const note = (recipients: Recipient[]): Notification => ({
  type: 'escrow.request-filed', tenantId: 't1', severity: 'info', recipients, subject: 'Approval wanted', body: 'b', resource: { type: 'access-request', id: 'r1' },
});

/** Tenant t1: ann and bob (leads) have addresses, cy has none; machine m1 is ann's. Tenant t2 has its own ann. */
const directory: PeopleDirectory & { calls: string[] } = {
  calls: [],
  async addressesOf(tenantId, users) {
    this.calls.push(`addressesOf ${tenantId}`);
    const people = tenantId === 't1'
      ? [{ id: 'u-ann', username: 'ann', email: 'ann@example.com' }, { id: 'u-bob', username: 'bob', email: 'Bob@Example.com' }, { id: 'u-cy', username: 'cy', email: null }]
      : [{ id: 'u-ann2', username: 'ann', email: 'ann@elsewhere.example' }];
    return people.filter((p) => (users.ids.includes(p.id) || users.usernames.includes(p.username)) && p.email !== null).map((p) => p.email!);
  },
  async ownersOf(tenantId, ids) {
    return tenantId === 't1' && ids.includes('m1') ? ['u-ann'] : [];
  },
  async membersOf(tenantId, groups) {
    return tenantId === 't1' && groups.includes('leads') ? ['ann', 'bob', 'cy'] : [];
  },
};

let smtp: Awaited<ReturnType<typeof startSmtpServer>>;
describe('SMTP recipients', () => {
  before(async () => {
    smtp = await startSmtpServer();
  });
  after(() => smtp.close());

  const channel = (people: RecipientResolver, onError?: (err: Error) => void) =>
    createSmtpNotifier({ host: '127.0.0.1', port: smtp.port, from: 'keyhold@example.com', attempts: 1, people, ...(onError ? { onError } : {}) });

  test('users, machine owners and group members are mailed once each, on the envelope only; e-mail recipients stay in To', async () => {
    await channel(createRecipientResolver(directory)).notify(note([
      { kind: 'group', id: 'leads' }, { kind: 'machine', id: 'm1' }, { kind: 'user', id: 'u-bob' }, { kind: 'email', id: 'bob@example.com' }, { kind: 'email', id: 'ops@example.com' },
    ]));
    const mail = smtp.received.at(-1)!;
    assert.deepEqual(mail.to, ['bob@example.com', 'ops@example.com', 'ann@example.com']);
    assert.match(mail.data, /^To: bob@example\.com, ops@example\.com$/m);
    assert.ok(!mail.data.includes('ann@example.com'), "a person's address is not in a header");

    await channel(createRecipientResolver(directory)).notify(note([{ kind: 'user', id: 'u-ann' }]));
    assert.deepEqual(smtp.received.at(-1)!.to, ['ann@example.com']);
    assert.ok(smtp.received.at(-1)!.data.includes(`To: ${UNDISCLOSED}`));
  });

  test("recipients resolve only in the notification's tenant, and nobody resolved means nothing is sent", async () => {
    const before = smtp.received.length;
    await channel(createRecipientResolver(directory)).notify({ ...note([{ kind: 'group', id: 'leads' }, { kind: 'user', id: 'u-ann' }, { kind: 'machine', id: 'm1' }]), tenantId: 't2' });
    await channel(createRecipientResolver(directory)).notify(note([{ kind: 'user', id: 'u-cy' }, { kind: 'user', id: 'u-ann2' }, { kind: 'group', id: 'nobody' }]));
    assert.equal(smtp.received.length, before);
    directory.calls.length = 0;
    await channel(createRecipientResolver(directory)).notify(note([{ kind: 'group', id: 'nobody' }]));
    assert.deepEqual(directory.calls, [], 'an empty group asks for no addresses');
  });

  test('a failed lookup is reported without an address, and the e-mail recipients are still mailed', async () => {
    const errors: Error[] = [];
    const broken: RecipientResolver = { addressesOf: async () => { throw new Error('database unavailable'); } };
    await channel(broken, (e) => errors.push(e)).notify(note([{ kind: 'user', id: 'u-ann' }, { kind: 'email', id: 'ops@example.com' }]));
    assert.deepEqual(smtp.received.at(-1)!.to, ['ops@example.com']);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.message, /escrow\.request-filed: the recipients' addresses could not be looked up: database unavailable/);
  });
});
