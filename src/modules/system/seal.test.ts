import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { parseShare } from '../../crypto/root/shamir/index.ts';

const rejects = (p: Promise<unknown>, code: string) => assert.rejects(p, (err: { code?: string }) => {
  assert.equal(err.code, code);
  return true;
});

describeEachDialect('seal and unseal', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'SEALED_KEY', owner: 'ops' });
    await h.services.values.write(h.ctx, 'SEALED_KEY', 'production', { value: 'behind-the-seal' });
  });
  after(() => h.close());

  test('init runs once', async () => {
    await rejects(h.services.system.initialize({ type: 'shamir', shares: 3, threshold: 2 }), 'ALREADY_INITIALIZED');
  });

  test('a sealed server refuses every secret operation with SEALED and reports progress', async () => {
    await h.services.system.seal({ type: 'root', id: 'test-root' });
    await rejects(h.services.values.read(h.ctx, 'SEALED_KEY', 'production'), 'SEALED');
    await rejects(h.services.values.write(h.ctx, 'SEALED_KEY', 'production', { value: 'x' }), 'SEALED');
    await rejects(h.services.tenants.create('while-sealed'), 'SEALED');
    await rejects(h.services.keys.rotate(h.ctx), 'SEALED');
    const status = await h.services.system.status();
    assert.deepEqual([status.sealed, status.threshold, status.progress], [true, 2, 0]);
  });

  test('a tampered share is detected after reconstruction and progress resets', async () => {
    const share = parseShare(h.shares[1]!);
    share[4]! ^= 0x01;
    const tampered = 'khs1.' + share.toString('base64url');
    const mid = await h.services.system.unseal(h.shares[0]!);
    assert.equal(mid.progress, 1);
    await rejects(h.services.system.unseal(tampered), 'UNSEAL_FAILED');
    assert.deepEqual([(await h.services.system.status()).sealed, (await h.services.system.status()).progress], [true, 0]);
  });

  test('a share from another server does not unseal this one', async () => {
    const other = await createHarness('sqlite');
    try {
      await h.services.system.unseal(h.shares[0]!);
      await rejects(h.services.system.unseal(other.shares[1]!), 'UNSEAL_FAILED');
    } finally {
      await other.close();
    }
  });

  test('the same share twice does not count twice; junk is refused before it counts', async () => {
    await h.services.system.unseal(h.shares[2]!);
    await rejects(h.services.system.unseal(h.shares[2]!), 'INVALID_SHARE');
    await rejects(h.services.system.unseal('not-a-share'), 'INVALID_SHARE');
    assert.equal((await h.services.system.status()).progress, 1);
  });

  test('any threshold of valid shares unseals, and values decrypt again', async () => {
    const status = await h.services.system.unseal(h.shares[0]!);
    assert.equal(status.sealed, false);
    assert.equal((await h.services.values.read(h.ctx, 'SEALED_KEY', 'production')).value, 'behind-the-seal');
  });
});
