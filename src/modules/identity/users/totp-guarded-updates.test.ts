import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { call, enrolTotp, newUser, sessionFor, ticketFor } from '../../../../test/helpers/users.ts';
import { hashTicket } from './enrolment-ticket.ts';
import { createUserRepository } from './user-repository.ts';

/**
 * Enrolment checks the ticket (or the factor the step-up vouched for) on the row it loaded, then
 * writes with one guarded UPDATE. Whatever changed in between (a newer ticket, the ticket's expiry,
 * an admin's reset and a new factor) must make that UPDATE match nothing: the service's own check
 * was made on a row that no longer is.
 */
describeEachDialect('the guarded UPDATEs of TOTP enrolment', (dialect) => {
  let h: Harness;
  const blob = Buffer.from('a-sealed-secret-stand-in');
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('a ticket replaced by a newer one, or past its expiry, consumes nothing; the live ticket does, once', async () => {
    const repo = createUserRepository(h.storage.db, dialect);
    const { id } = await newUser(h, 'ticket-race');
    const superseded = await ticketFor(h, id);
    const live = await ticketFor(h, id, { ttlSeconds: 600 });
    const now = h.clock.now();
    assert.equal(await repo.setPendingTotpWithTicket(h.ctx.tenantId, id, blob, hashTicket(superseded), now), false, 'the superseded ticket');
    assert.equal(await repo.setPendingTotpWithTicket(h.ctx.tenantId, id, blob, hashTicket(live), now + 600_000), false, 'the live ticket at its expiry');
    assert.equal(await repo.setPendingTotpWithTicket(h.ctx.tenantId, id, blob, hashTicket(live), now + 599_999), true, 'the live ticket before it');
    assert.equal(await repo.setPendingTotpWithTicket(h.ctx.tenantId, id, blob, hashTicket(live), now), false, 'used up');
  });

  test('a replacement checked against a factor an admin has since reset (and the user re-enrolled) is not stored', async () => {
    const repo = createUserRepository(h.storage.db, dialect);
    const { id, username } = await newUser(h, 'replace-race');
    await enrolTotp(h, await sessionFor(h, username));
    const loaded = (await repo.credentialsById(h.ctx.tenantId, id))!;
    assert.equal((await call(h, 'POST', `/v1/users/${id}/totp-ticket`, { token: h.rootToken, body: { resetFactor: true } })).status, 200);
    await enrolTotp(h, await sessionFor(h, username));
    const now = (await repo.credentialsById(h.ctx.tenantId, id))!;
    assert.deepEqual([now.totp_enabled, now.factor_epoch !== loaded.factor_epoch], [1, true]);
    assert.equal(await repo.setPendingTotp(h.ctx.tenantId, id, blob, loaded.factor_epoch), false);
    assert.equal((await repo.credentialsById(h.ctx.tenantId, id))!.totp_pending_secret, null, 'nothing pending');
    assert.equal(await repo.setPendingTotp(h.ctx.tenantId, id, blob, now.factor_epoch), true, 'under the factor in force it is');
  });
});
