import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { unrevokedTokens } from '../../../../test/helpers/identities.ts';
import { afterReads } from '../../../../test/helpers/pause-after-read.ts';
import { CLIENT_CREDENTIALS_GRANT } from './types.ts';

/**
 * A token exchange checks the client secret against the identity row it read, then issues the
 * token in a transaction that asks again whether that row is still live and holds the same secret.
 * A disable or a secret rotation that commits between the two is seen by the second look, at the
 * read the test names (no timing): no token comes out of a disabled identity or a rotated secret.
 */
describeEachDialect('a token exchange racing a change to its identity', (dialect) => {
  let h: Harness;
  const hooks: Record<number, () => Promise<void>> = {};
  const reads = afterReads('machine_identities', hooks);
  before(async () => {
    h = await createHarness(dialect, { plugins: [reads] });
  });
  after(() => h.close());

  /** Exchanges the client secret, running `meanwhile` right after the exchange has read the identity. */
  async function exchangeWith(client: { clientId: string; clientSecret?: string }, meanwhile: () => Promise<unknown>) {
    let ran = false;
    hooks[reads.reads() + 1] = async () => {
      ran = true;
      await meanwhile();
    };
    const result = await h.services.tokenExchange.exchange(
      { grant_type: CLIENT_CREDENTIALS_GRANT, client_id: client.clientId, client_secret: client.clientSecret! },
      { requestId: 'race', sourceIp: '10.9.8.7' },
    );
    assert.ok(ran, 'the change ran between the read and the issue');
    return result;
  }

  test('a disable that commits after the read: no token', async () => {
    const m = await h.services.machines.create(h.ctx, { name: 'race-disable', kind: 'client_secret' });
    const result = await exchangeWith(m, () => h.services.machines.disable(h.ctx, m.id));
    assert.deepEqual([result.ok, !result.ok && result.reason], [false, 'invalid']);
    assert.deepEqual(await unrevokedTokens(h, m.id), []);
  });

  test('a rotation that commits after the read: the old secret gets no token', async () => {
    const m = await h.services.machines.create(h.ctx, { name: 'race-rotate', kind: 'client_secret' });
    const result = await exchangeWith(m, () => h.services.machines.rotateSecret(h.ctx, m.id));
    assert.deepEqual([result.ok, !result.ok && result.reason], [false, 'invalid']);
    assert.deepEqual(await unrevokedTokens(h, m.id), []);
  });
});
