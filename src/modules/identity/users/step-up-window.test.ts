import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { call, codeAt, enrolTotp, newUser, nextStep, sessionFor } from '../../../../test/helpers/users.ts';
import { identitySettings } from '../../../config/config.ts';

/**
 * The step-up window is inclusive at its edge, and the same edge for every step-up action: a second
 * factor verified N minutes ago still counts, one verified N minutes and 1 ms ago does not (fake clock).
 */
describeEachDialect('the step-up window boundary', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  const window = identitySettings().stepUpWindowMs;

  async function steppedUpAdmin(prefix: string): Promise<{ token: string; secret: string; at: number }> {
    const user = await newUser(h, prefix);
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: user.id, role: 'tenant-admin' });
    const token = await sessionFor(h, user.username);
    const secret = await enrolTotp(h, token);
    const res = await call(h, 'POST', '/v1/auth/step-up', { token, body: { code: codeAt(secret, h.clock.now()) } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return { token, secret, at: Date.parse(res.body.mfaAt) };
  }

  test('an admin action is allowed exactly N minutes after the step-up and refused 1 ms later, until the next step-up', async () => {
    const { token, secret, at } = await steppedUpAdmin('edge');
    h.clock.set(at + window);
    assert.equal((await call(h, 'GET', '/v1/users', { token })).status, 200);
    h.clock.set(at + window + 1);
    const late = await call(h, 'GET', '/v1/users', { token });
    assert.deepEqual([late.status, late.body.error?.code], [403, 'STEP_UP_REQUIRED']);
    nextStep(h);
    assert.equal((await call(h, 'POST', '/v1/auth/step-up', { token, body: { code: codeAt(secret, h.clock.now()) } })).status, 200);
    assert.equal((await call(h, 'GET', '/v1/users', { token })).status, 200);
  });

  test('replacing the factor has the same edge as the authorizer', async () => {
    const first = await steppedUpAdmin('edge-enrol');
    h.clock.set(first.at + window);
    assert.equal((await call(h, 'POST', '/v1/auth/totp/enroll', { token: first.token, body: {} })).status, 200);
    const second = await steppedUpAdmin('edge-enrol-late');
    h.clock.set(second.at + window + 1);
    const late = await call(h, 'POST', '/v1/auth/totp/enroll', { token: second.token, body: {} });
    assert.deepEqual([late.status, late.body.error?.code], [403, 'STEP_UP_REQUIRED']);
  });
});
