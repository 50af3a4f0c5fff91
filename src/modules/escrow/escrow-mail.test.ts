import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeMail } from '../../../test/fixtures/mime-decode.ts';
import { startSmtpServer, type ReceivedMail } from '../../../test/fixtures/smtp-server.ts';
import { auditTexts } from '../../../test/helpers/canaries.ts';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { setUpEscrow, type EscrowCast } from '../../../test/helpers/escrow.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';

const why = 'INC-5120: check the payout batch against the bank statement';

/** Escrow news by e-mail: the SMTP channel finds people's addresses from the recipients escrow names (users, machines, approver groups). */
describeEachDialect('escrow: notifications are e-mailed to the people they name', (dialect) => {
  let h: Harness;
  let c: EscrowCast;
  let smtp: Awaited<ReturnType<typeof startSmtpServer>>;
  const addresses = { alice: 'alice@example.com', bob: 'bob@example.com', carol: 'carol@example.com', dave: 'dave@example.com', builder: 'builder@example.com' };

  /** The first mail whose subject matches, once it has arrived (notifications are sent after the change commits). */
  async function mailAbout(subject: RegExp): Promise<ReceivedMail> {
    for (const until = Date.now() + 20_000; Date.now() < until; await new Promise((r) => setTimeout(r, 20))) {
      const found = smtp.received.find((m) => subject.test(m.data));
      if (found) return found;
    }
    throw new Error(`no mail matching ${subject}`);
  }

  before(async () => {
    smtp = await startSmtpServer();
    h = await createHarness(dialect, {
      notify: { webhook: null, smtp: { host: '127.0.0.1', port: smtp.port, secure: false, starttls: 'off', username: null, password: null, from: 'keyhold@example.com' } },
    });
    c = await setUpEscrow(h, ['STRIPE_KEY', 'PAY_TOKEN']);
    for (const [name, address] of Object.entries(addresses)) await h.services.users.setEmail(h.ctx, c[name as keyof typeof addresses].id, address);
    // frank (leads) has no address; bob (leads) is disabled.
    await h.services.users.disable(h.ctx, c.bob.id);
    // Another tenant with a group of the same name, whose member has an address, and a user named like one of ours.
    const other = await h.services.tenants.create('other-mail');
    const otherCtx = h.contextFor(other.id);
    for (const name of ['mallory', 'alice']) {
      const u = await userContext(h, other.id, name);
      await h.services.users.setEmail(otherCtx, u.id, `${name}-other@example.com`);
    }
    await h.services.escrow.accessPolicies.put(otherCtx, {
      document: { groups: { leads: ['mallory', 'alice'], security: ['mallory'] }, rules: [{ id: 'all', environments: ['production'], actions: ['reveal'], steps: [{ groups: ['leads'], approvals: 1 }] }] },
      comment: 'same group names elsewhere',
    });
  });
  after(async () => {
    await h.close();
    await smtp.close();
  });

  test("filing a request mails the step's group members who have an address, once each, within the tenant only", async () => {
    await h.services.escrow.requests.file(c.builder.ctx(), { secrets: ['STRIPE_KEY'], environment: 'production', action: 'reveal', justification: why });
    const mail = await mailAbout(/^Subject: \[Keyhold\] Approval wanted: reveal of STRIPE_KEY in production$/m);
    // leads ∪ security: alice, bob (disabled), carol (in both), frank (no address), dave.
    assert.deepEqual([...mail.to].sort(), [addresses.alice, addresses.carol, addresses.dave]);
    assert.match(mail.data, /^X-Keyhold-Type: escrow\.request-filed$/m);
    for (const address of Object.values(addresses)) assert.ok(!mail.data.includes(address), "people's addresses are on the envelope only, never in a header others read");
  });

  test("a machine's request reaches its owner by e-mail, and a machine recipient alone resolves to its owner", async () => {
    const req = await h.services.escrow.requests.file(c.runner.ctx(), { secrets: ['PAY_TOKEN'], environment: 'production', action: 'use', justification: why });
    // Its own mail to the approvers first: sent after the filing commits, it could otherwise land among those counted below.
    await mailAbout(/^Subject: \[Keyhold\] Approval wanted: use of PAY_TOKEN in production$/m);
    await h.services.escrow.decisions.approve(c.carol.ctx(), req.id, { comment: 'ok' });
    const approved = await mailAbout(/^Subject: \[Keyhold\] Approved: use of PAY_TOKEN in production$/m);
    assert.deepEqual(approved.to, [addresses.alice]);
    const before = smtp.received.length;
    await h.services.notifier.notify({
      type: 'escrow.request-approved', tenantId: h.ctx.tenantId, severity: 'info', recipients: [{ kind: 'machine', id: c.runner.id }],
      subject: 'machine only', body: 'b', resource: { type: 'access-request', id: req.id },
    });
    assert.deepEqual(smtp.received.slice(before).map((m) => m.to), [[addresses.alice]]);
  });

  test('nobody with an address, a disabled user, or an id of another tenant: nothing is sent', async () => {
    const before = smtp.received.length;
    const other = (await h.services.tenants.findByName('other-mail'))!;
    const mallory = await h.storage.db.selectFrom('users').select('id').where('tenant_id', '=', other.id).where('username', '=', 'mallory').executeTakeFirstOrThrow();
    await h.services.notifier.notify({
      type: 'escrow.request-filed', tenantId: h.ctx.tenantId, severity: 'info',
      recipients: [{ kind: 'user', id: c.frank.id }, { kind: 'user', id: c.bob.id }, { kind: 'user', id: mallory.id }, { kind: 'group', id: 'nobody' }],
      subject: 'to no one', body: 'b', resource: { type: 'access-request', id: 'x' },
    });
    assert.equal(smtp.received.length, before);
  });

  test('no secret value and no address reaches a mail, the audit trail or the log', async () => {
    await h.services.escrow.breakGlass.breakGlass(c.oncall.ctx(), { secrets: ['STRIPE_KEY'], environment: 'production', action: 'reveal', justification: `${why} stripe_key-production-v2-value` });
    const alert = await mailAbout(/^X-Keyhold-Severity: alert$/m);
    assert.ok(alert.to.includes(addresses.alice), 'the break-glass alert reaches the approvers');
    // As sent and as read: a value split by quoted-printable's soft breaks or inside an encoded-word shows only decoded.
    const read = (data: string) => { const m = decodeMail(data); return [...m.headers.map(([n, v]) => `${n}: ${v}`), m.body].join('\n'); };
    const mails = smtp.received.map((m, i) => ({ where: `mail ${i + 1}`, text: `${m.data}\n${read(m.data)}` }));
    assert.ok(mails.length >= 3);
    assert.deepEqual(h.canaries.findIn(mails), []);
    assert.ok(!mails.some((m) => m.text.includes('stripe_key-production')), 'the pasted value was masked');
    const traces = [...(await auditTexts(h.storage)), { where: 'log', text: h.logs.text() }];
    for (const address of [...Object.values(addresses), 'mallory-other@example.com']) {
      assert.deepEqual(traces.filter((t) => t.text.includes(address)).map((t) => t.where), [], `${address} is kept out of the audit trail and log`);
    }
  });
});
