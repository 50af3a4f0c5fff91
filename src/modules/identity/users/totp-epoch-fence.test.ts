import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { call, codeAt, enrolTotp, newUser, nextStep, sessionFor } from '../../../../test/helpers/users.ts';
import { createAttemptGuards, DEFAULT_ATTEMPT_LIMITS } from './attempts.ts';
import { createTotpService } from './totp-service.ts';
import { createUserRepository } from './user-repository.ts';

/**
 * A code is checked against the factor in the row the check loaded, then claimed by one guarded
 * UPDATE. If an admin reset the factor and the user enrolled a new one in between, the claim must
 * not land on the new factor: a code of the lost authenticator would then sign in.
 */
describeEachDialect('a code of a reset factor, claimed after re-enrolment', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('is refused although the new factor is enabled and its last step is older', async () => {
    const repo = createUserRepository(h.storage.db, dialect);
    const totp = createTotpService({
      db: h.storage.db, repo, keyring: h.services.keyring, tenants: h.services.tenants, sessions: h.services.sessions,
      guard: createAttemptGuards(DEFAULT_ATTEMPT_LIMITS, h.clock).factor, clock: h.clock, stepUpWindowMs: 10 * 60_000, audit: h.services.audit,
    });
    const { id, username } = await newUser(h, 'lost-phone');
    const lost = await enrolTotp(h, await sessionFor(h, username));
    // The check has loaded the row (old factor, old epoch) ...
    const loaded = (await repo.credentialsById(h.ctx.tenantId, id))!;
    // ... when the admin resets the factor and the user enrols and confirms a new one.
    assert.equal((await call(h, 'POST', `/v1/users/${id}/totp-ticket`, { token: h.rootToken, body: { resetFactor: true } })).status, 200);
    await enrolTotp(h, await sessionFor(h, username));
    const now = (await repo.credentialsById(h.ctx.tenantId, id))!;
    assert.equal(now.totp_enabled, 1);
    assert.notEqual(now.factor_epoch, loaded.factor_epoch);
    nextStep(h);
    assert.equal(await totp.useCode(loaded, codeAt(lost, h.clock.now())), false);
    assert.equal((await repo.credentialsById(h.ctx.tenantId, id))!.totp_last_step, now.totp_last_step, 'nothing was claimed');
  });
});
