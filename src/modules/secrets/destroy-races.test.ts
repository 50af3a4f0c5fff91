import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, ROLLBACK_WINDOW_MS, type Harness } from '../../../test/helpers/harness.ts';
import { backendPid, waitUntilBlockedBy } from '../../../test/helpers/pg-lock-waits.ts';
import type { Kysely } from 'kysely';
import type { Database } from '../../storage/schema.ts';
import { createRetentionJob } from './retention.ts';
import { createValueService } from './value-service.ts';
import { createPendingVersions } from './pending-versions.ts';
import { createSecretService } from './secret-service.ts';

const settle = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string; name?: string }) => e.code ?? `${e.name}: ${String(e)}`);

/** A database whose first transaction lets `interleave` commit first: the moment between a sweep's choice and its act. */
function beforeFirstTransaction(db: Kysely<Database>, interleave: () => Promise<void>): Kysely<Database> {
  let pending = true;
  return new Proxy(db, {
    get(target, prop) {
      if (prop === 'transaction' && pending) {
        pending = false;
        return () => ({ execute: async <T>(fn: Parameters<ReturnType<typeof target.transaction>['execute']>[0]) => {
          await interleave();
          return target.transaction().execute(fn) as Promise<T>;
        } });
      }
      const value = Reflect.get(target, prop) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/**
 * Destroying is for good, so its checks must hold when it acts: "never the current version" against
 * a rollback that commits meanwhile, and "only a soft-deleted secret" against a restore.
 */
describeEachDialect('destroy racing rollback and restore', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  // PostgreSQL only: SQLite's one connection runs one transaction at a time, so the two cannot interleave there.
  if (dialect === 'postgres') test('destroying a version never destroys the one a concurrent rollback made current', async () => {
    const name = 'RACE_KEY';
    const secret = await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    await h.services.values.write(h.ctx, name, 'production', { value: 'value-one' });
    await h.services.values.write(h.ctx, name, 'production', { value: 'value-two' });
    // Hold the label row so both line up behind it: the rollback (to version 1) first, then the destroy of version 1.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let locked!: (pid: number) => void;
    const isLocked = new Promise<number>((r) => (locked = r));
    const locker = h.storage.db.transaction().execute(async (trx) => {
      await trx.selectFrom('secret_states').selectAll().where('secret_id', '=', secret.id).forUpdate().execute();
      locked(await backendPid(trx));
      await held;
    });
    const lockerPid = await isLocked;
    // Each one queued before the next starts (PostgreSQL grants a row lock in queue order), whatever the machine's load.
    const rollback = settle(h.services.values.rollback(h.ctx, name, 'production'));
    const rollbackPid = await waitUntilBlockedBy(h.storage.db, [lockerPid]);
    const destroy = settle(h.services.secrets.destroy(h.ctx, name, { environment: 'production', versions: [1] }));
    await waitUntilBlockedBy(h.storage.db, [lockerPid, rollbackPid]);
    release();
    await locker;
    assert.deepEqual(await Promise.all([rollback, destroy]), ['ok', 'VALIDATION_FAILED'], 'the rollback won; the destroy saw version 1 current');
    const history = await h.services.values.history(h.ctx, name, 'production');
    const current = history.find((v) => v.labels.includes('current'))!;
    assert.deepEqual([current.version, current.destroyedAt], [1, null]);
    assert.equal((await h.services.values.read(h.ctx, name, 'production')).value, 'value-one');
  });

  test('a secret restored concurrently with its destruction is either live with its value or gone, and every answer is a Keyhold code', async () => {
    for (let i = 0; i < 5; i++) {
      const name = `RACE_RESTORE_${i}`;
      await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
      await h.services.values.write(h.ctx, name, 'production', { value: `value-${i}` });
      await h.services.secrets.remove(h.ctx, name);
      const [destroyed, restored] = await Promise.all([settle(h.services.secrets.destroy(h.ctx, name)), settle(h.services.secrets.restore(h.ctx, name))]);
      const value = await settle(h.services.values.read(h.ctx, name, 'production').then((r) => assert.equal(r.value, `value-${i}`)));
      // Exactly one wins: destroyed (restore finds nothing), or restored (destroy finds it live); never both, never a TypeError.
      assert.ok(
        (destroyed === 'ok' && restored === 'SECRET_NOT_FOUND' && value === 'SECRET_NOT_FOUND')
          || (restored === 'ok' && destroyed === 'SECRET_NOT_DELETED' && value === 'ok'),
        `destroy ${destroyed}, restore ${restored}, read ${value}`,
      );
      const events = await h.storage.db.selectFrom('audit_events').select(['action']).where('resource_name', '=', name)
        .where('action', 'in', ['secret.destroy', 'secret.restore']).where('outcome', '=', 'allowed').execute();
      assert.equal(events.length, 1, 'one allowed event: the winner\'s');
    }
  });

  /** A value service whose write meets `interleave` between its checks (secret live, allowed) and its transaction. */
  const writeRacing = (interleave: () => Promise<unknown>) => createValueService({
    ...h.services, db: beforeFirstTransaction(h.storage.db, async () => void (await interleave())),
    maxValueBytes: 1024, rollbackWindowMs: ROLLBACK_WINDOW_MS, clock: h.clock,
  });

  test('a write racing the deletion of its secret is refused as SECRET_NOT_FOUND: no version lands in a deleted secret', async () => {
    const name = 'WRITE_VS_DELETE';
    await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    await h.services.values.write(h.ctx, name, 'production', { value: 'before-delete' });
    const values = writeRacing(() => h.services.secrets.remove(h.ctx, name));
    assert.equal(await settle(values.write(h.ctx, name, 'production', { value: 'after-delete' })), 'SECRET_NOT_FOUND');
    await h.services.secrets.restore(h.ctx, name);
    assert.deepEqual((await h.services.values.history(h.ctx, name, 'production')).map((v) => v.version), [1]);
    assert.equal((await h.services.values.read(h.ctx, name, 'production')).value, 'before-delete');
  });

  test('a rollback racing the deletion of its secret is refused as SECRET_NOT_FOUND: no label moves in a deleted secret', async () => {
    const name = 'ROLLBACK_VS_DELETE';
    await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    await h.services.values.write(h.ctx, name, 'production', { value: 'value-one' });
    await h.services.values.write(h.ctx, name, 'production', { value: 'value-two' });
    const values = writeRacing(() => h.services.secrets.remove(h.ctx, name));
    assert.equal(await settle(values.rollback(h.ctx, name, 'production')), 'SECRET_NOT_FOUND');
    const rollbacks = await h.storage.db.selectFrom('audit_events').select('outcome').where('resource_name', '=', name)
      .where('action', '=', 'secret.rollback').execute();
    assert.deepEqual(rollbacks.map((e) => e.outcome), ['failed'], 'no allowed rollback of a deleted secret');
    await h.services.secrets.restore(h.ctx, name);
    const read = await h.services.values.read(h.ctx, name, 'production');
    assert.equal(`${read.version}:${read.value}`, '2:value-two', 'restored as it was deleted');
  });

  test('a write racing the destruction of its secret is refused as SECRET_NOT_FOUND, not a foreign-key error (a 500)', async () => {
    const name = 'WRITE_VS_DESTROY';
    await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    const values = writeRacing(async () => {
      await h.services.secrets.remove(h.ctx, name);
      await h.services.secrets.destroy(h.ctx, name);
    });
    assert.equal(await settle(values.write(h.ctx, name, 'production', { value: 'into-the-void' })), 'SECRET_NOT_FOUND');
    const orphans = await h.storage.db.selectFrom('secret_versions').select('id').where('tenant_id', '=', h.ctx.tenantId)
      .where('secret_id', 'not in', h.storage.db.selectFrom('secrets').select('id')).execute();
    assert.equal(orphans.length, 0);
  });

  test('a pending version (rotation) racing the deletion of its secret is refused the same way', async () => {
    const name = 'PENDING_VS_DELETE';
    const secret = await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    const env = await h.services.tenants.environment(h.ctx.tenantId, 'production');
    const pending = createPendingVersions({
      ...h.services, db: beforeFirstTransaction(h.storage.db, () => h.services.secrets.remove(h.ctx, name).then(() => undefined)),
      clock: h.clock, maxValueBytes: 1024,
    });
    const target = { secretId: secret.id, name, environmentId: env.id, environment: 'production' };
    assert.equal(await settle(pending.write(h.ctx, target, 'staged-after-delete')), 'SECRET_NOT_FOUND');
    assert.deepEqual(await pending.labels(target), { current: null, pending: null, previous: null });
  });

  /** A secret service whose first transaction lets `interleave` commit first (after its checks). */
  const secretsRacing = (interleave: () => Promise<unknown>) => createSecretService({
    ...h.services, db: beforeFirstTransaction(h.storage.db, async () => void (await interleave())), clock: h.clock, maxNameLength: 128,
  });
  const allowedDeletes = (name: string) => h.storage.db.selectFrom('audit_events').select(['action', 'resource_id'])
    .where('resource_name', '=', name).where('action', '=', 'secret.delete').where('outcome', '=', 'allowed').execute();

  test('a soft delete racing the destruction of its secret is SECRET_NOT_FOUND and records no delete that did not happen', async () => {
    const name = 'DELETE_VS_DESTROY';
    await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    const secrets = secretsRacing(async () => {
      await h.services.secrets.remove(h.ctx, name);
      await h.services.secrets.destroy(h.ctx, name);
    });
    assert.equal(await settle(secrets.remove(h.ctx, name)), 'SECRET_NOT_FOUND');
    assert.equal((await allowedDeletes(name)).length, 1, 'only the delete that happened');
  });

  test('a metadata update racing the deletion of its secret is SECRET_NOT_FOUND: a deleted secret is restored as it was deleted', async () => {
    const name = 'UPDATE_VS_DELETE';
    await h.services.secrets.create(h.ctx, { name, owner: 'ops', tags: ['before'] });
    const secrets = secretsRacing(() => h.services.secrets.remove(h.ctx, name));
    assert.equal(await settle(secrets.update(h.ctx, name, { owner: 'someone-else', tags: ['after'] })), 'SECRET_NOT_FOUND');
    const updates = await h.storage.db.selectFrom('audit_events').select('outcome').where('resource_name', '=', name)
      .where('action', '=', 'secret.update').where('outcome', '=', 'allowed').execute();
    assert.equal(updates.length, 0, 'no update recorded that did not happen');
    const restored = await h.services.secrets.restore(h.ctx, name);
    assert.deepEqual([restored.owner, restored.tags], ['ops', ['before']]);
  });

  test('two soft deletes racing: one deletes, the other is SECRET_NOT_FOUND, and the deletion time stays the first one\'s', async () => {
    const name = 'DELETE_VS_DELETE';
    await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    let first: string | null = null;
    const secrets = secretsRacing(async () => {
      first = (await h.services.secrets.remove(h.ctx, name)).deletedAt;
      h.clock.advance(1000);
    });
    assert.equal(await settle(secrets.remove(h.ctx, name)), 'SECRET_NOT_FOUND');
    const [now] = (await h.services.secrets.list(h.ctx, { includeDeleted: true, prefix: name })).items;
    assert.equal(now!.deletedAt, first);
    assert.equal((await allowedDeletes(name)).length, 1, 'one delete event');
  });

  // Last: they move the clock a whole rollback window on.
  const sweepRacing = async (name: string, interleave: () => Promise<unknown>) => {
    await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    await h.services.values.write(h.ctx, name, 'production', { value: 'value-one' });
    await h.services.values.write(h.ctx, name, 'production', { value: 'value-two' });
    // Version 1 was superseded exactly one window ago: the rollback may still take it back, the sweep may shred it.
    // (With two nodes, any clock skew between them widens this instant into a span.)
    h.clock.advance(ROLLBACK_WINDOW_MS);
    let interleaved = 'not run';
    const sweep = createRetentionJob({
      db: beforeFirstTransaction(h.storage.db, async () => void (interleaved = await settle(interleave()))),
      clock: h.clock, rollbackWindowMs: ROLLBACK_WINDOW_MS, keyring: h.services.keyring, rows: h.services.rows,
    });
    await sweep.sweep();
    assert.equal(interleaved, 'ok', 'the change landed between the sweep\'s choice and its transaction');
    return (await h.services.values.history(h.ctx, name, 'production')).map((v) => [v.version, v.labels, v.destroyedAt === null]);
  };

  test('the retention sweep never shreds a version that a rollback made current after the sweep chose it', async () => {
    const history = await sweepRacing('RETAINED_KEY', () => h.services.values.rollback(h.ctx, 'RETAINED_KEY', 'production'));
    assert.deepEqual(history, [[2, ['previous'], true], [1, ['current'], true]], 'nothing shredded');
    const read = await h.services.values.read(h.ctx, 'RETAINED_KEY', 'production').then((r) => `${r.version}:${r.value}`, (e: { code?: string }) => e.code);
    assert.equal(read, '1:value-one', 'the current version is intact');
  });

  test('nor one that was made current and superseded again meanwhile: its rollback window starts anew', async () => {
    const history = await sweepRacing('RETAINED_AGAIN', async () => {
      await h.services.values.rollback(h.ctx, 'RETAINED_AGAIN', 'production');
      await h.services.values.write(h.ctx, 'RETAINED_AGAIN', 'production', { value: 'value-three' });
    });
    assert.deepEqual(history, [[3, ['current'], true], [2, [], true], [1, ['previous'], true]], 'nothing shredded');
    assert.equal((await h.services.values.rollback(h.ctx, 'RETAINED_AGAIN', 'production')).version, 1);
  });
});
