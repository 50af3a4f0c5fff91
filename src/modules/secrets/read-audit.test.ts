import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { eventsOf } from '../../../test/helpers/connectors.ts';
import type { TenantContext } from '../shared/context.ts';

/** The error a call ends with: code, status and message (what the HTTP body carries besides the request id). */
const refusal = (p: Promise<unknown>) => p.then(
  () => assert.fail('expected a refusal'),
  (e: { code?: string; status?: number; message?: string }) => ({ code: e.code, status: e.status, message: e.message }),
);
const missing = (name: string) => ({ code: 'SECRET_NOT_FOUND', status: 404, message: `secret "${name}" does not exist` });

describeEachDialect('reads that fail or are refused are audited without confirming names', (dialect) => {
  let h: Harness;
  let stripeRevealer: () => TenantContext;
  let dbViewer: () => TenantContext;
  before(async () => {
    h = await createHarness(dialect);
    for (const name of ['DB_PASSWORD', 'STRIPE_KEY']) {
      await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
      await h.services.values.write(h.ctx, name, 'production', { value: `${name.toLowerCase()}-value-1` });
      await h.services.values.write(h.ctx, name, 'production', { value: `${name.toLowerCase()}-value-2` });
    }
    const revealer = await userContext(h, h.ctx.tenantId, 'stripe-revealer');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: revealer.id, role: 'revealer', namePatterns: ['STRIPE_*'] });
    stripeRevealer = revealer.ctx;
    const viewer = await userContext(h, h.ctx.tenantId, 'db-viewer');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: viewer.id, role: 'viewer', namePatterns: ['DB_*'] });
    dbViewer = viewer.ctx;
  });
  after(() => h.close());

  test('a read of a name that does not exist is a failed event under the HMAC of the name, never the name itself', async () => {
    const name = 'SK_LIVE_PASTED_BY_MISTAKE';
    const before = (await eventsOf(h, 'secret.reveal')).length;
    assert.deepEqual(await refusal(h.services.values.read(h.ctx, name, 'production')), missing(name));
    assert.deepEqual(await refusal(h.services.values.read(h.ctx, name, 'production', { version: 1 })), missing(name));
    assert.deepEqual(await refusal(h.services.secrets.describe(h.ctx, name)), missing(name));
    const misses = (await eventsOf(h, 'secret.reveal')).slice(before);
    assert.equal(misses.length, 2, 'one event per refused read');
    for (const e of misses) {
      assert.deepEqual([e.outcome, e.reason, e.resource_id, e.environment], ['failed', 'SECRET_NOT_FOUND', null, 'production']);
      assert.equal(e.resource_name, h.services.identifiers.hash(name));
    }
    assert.equal((await eventsOf(h, 'secret.describe')).at(-1)!.resource_name, h.services.identifiers.hash(name));
    const all = JSON.stringify(await h.storage.db.selectFrom('audit_events').selectAll().execute());
    assert.equal(all.includes(name), false, 'the requested name is in no event');
  });

  test('a value operation naming an environment that does not exist is a failed event, both names as HMACs', async () => {
    const environment = 'prod-typo-x9';
    const notFound = { code: 'ENVIRONMENT_NOT_FOUND', status: 404, message: `environment "${environment}" does not exist in this tenant` };
    const attempts: Array<[string, () => Promise<unknown>]> = [
      ['secret.reveal', () => h.services.values.read(h.ctx, 'DB_PASSWORD', environment)],
      ['secret.reveal', () => h.services.values.read(h.ctx, 'DB_PASSWORD', environment, { version: 1 })],
      ['secret.write', () => h.services.values.write(h.ctx, 'DB_PASSWORD', environment, { value: 'never-stored' })],
      ['secret.history', () => h.services.values.history(h.ctx, 'DB_PASSWORD', environment)],
      ['secret.rollback', () => h.services.values.rollback(h.ctx, 'DB_PASSWORD', environment)],
    ];
    for (const [action, attempt] of attempts) {
      assert.deepEqual(await refusal(attempt()), notFound, action);
      const e = (await eventsOf(h, action)).at(-1)!;
      assert.deepEqual([e.outcome, e.reason, e.resource_id], ['failed', 'ENVIRONMENT_NOT_FOUND', null], action);
      assert.equal(e.resource_name, h.services.identifiers.hash('DB_PASSWORD'), 'the secret is not confirmed either');
      assert.equal(e.environment, h.services.identifiers.hash(environment));
    }
    const all = JSON.stringify(await h.storage.db.selectFrom('audit_events').selectAll().execute());
    assert.equal(all.includes(environment), false, 'the requested environment is in no event');
  });

  test('a revealer limited to STRIPE_* cannot tell whether DB_PASSWORD exists', async () => {
    const ctx = stripeRevealer();
    assert.equal((await h.services.values.read(ctx, 'STRIPE_KEY', 'production')).value, 'stripe_key-value-2');
    const deniedBefore = (await eventsOf(h, 'authz.reveal')).length;
    for (const [name, exists] of [['DB_PASSWORD', true], ['DB_PASSWORD_OLD', false]] as const) {
      assert.deepEqual(await refusal(h.services.values.read(ctx, name, 'production')), missing(name), `read of ${name} (exists: ${exists})`);
      assert.deepEqual(await refusal(h.services.values.read(ctx, name, 'production', { version: 1 })), missing(name));
      assert.deepEqual(await refusal(h.services.values.read(ctx, name, 'production', { label: 'previous' })), missing(name));
      assert.deepEqual(await refusal(h.services.secrets.describe(ctx, name)), missing(name));
      assert.deepEqual(await refusal(h.services.values.history(ctx, name, 'production')), missing(name));
      assert.deepEqual(await refusal(h.services.values.write(ctx, name, 'production', { value: 'overwrite-attempt' })), missing(name));
    }
    const denials = (await eventsOf(h, 'authz.reveal')).slice(deniedBefore);
    assert.equal(denials.length, 3, 'the real denials are still recorded, under the real name');
    for (const d of denials) assert.deepEqual([d.outcome, d.reason, d.resource_name], ['denied', 'FORBIDDEN', 'DB_PASSWORD']);
  });

  test('no per-name entry point confirms a name to a caller without rights: not writes, history, rollback, rotation or access requests, not through an unknown environment', async () => {
    const ctx = stripeRevealer();
    const entries: Array<[string, (name: string) => Promise<unknown>]> = [
      ['write in an unknown environment', (name) => h.services.values.write(ctx, name, 'no-such-env', { value: 'probe' })],
      ['history in an unknown environment', (name) => h.services.values.history(ctx, name, 'no-such-env')],
      ['rollback in an unknown environment', (name) => h.services.values.rollback(ctx, name, 'no-such-env')],
      ['rollback', (name) => h.services.values.rollback(ctx, name, 'production')],
      ['rotation policy', (name) => h.services.rotation.service.getPolicy(ctx, name, 'production')],
      ['rotate', (name) => h.services.rotation.service.rotate(ctx, name, 'production')],
      ['access request', (name) => h.services.escrow.requests.file(ctx, { secrets: [name], environment: 'production', action: 'reveal', justification: 'probing names, INC-1' })],
    ];
    for (const [what, call] of entries) {
      const existing = await refusal(call('DB_PASSWORD'));
      const absent = await refusal(call('DB_PASSWORD_OLD'));
      assert.deepEqual([existing.code, existing.status], [absent.code, absent.status], `${what}: the same answer whether or not the name exists`);
      assert.equal(existing.message?.replace('DB_PASSWORD', 'X'), absent.message?.replace('DB_PASSWORD_OLD', 'X'), `${what}: the same message`);
    }
  });

  test('a caller who may list a secret is still told FORBIDDEN, not a miss', async () => {
    assert.equal((await refusal(h.services.values.read(dbViewer(), 'DB_PASSWORD', 'production'))).code, 'FORBIDDEN');
    assert.equal((await refusal(h.services.values.write(dbViewer(), 'DB_PASSWORD', 'production', { value: 'viewer-write' }))).code, 'FORBIDDEN');
  });

  test('a write or rollback that was allowed but did not happen is a failed event with its code', async () => {
    await h.services.secrets.create(h.ctx, { name: 'CHANGE_FAILS', owner: 'ops' });
    assert.equal((await refusal(h.services.values.rollback(h.ctx, 'CHANGE_FAILS', 'production'))).code, 'VALUE_NOT_SET');
    await h.services.values.write(h.ctx, 'CHANGE_FAILS', 'production', { value: 'change-fails-value-1' });
    assert.equal((await refusal(h.services.values.write(h.ctx, 'CHANGE_FAILS', 'production', { value: 'change-fails-value-2', cas: 7 }))).code, 'CAS_MISMATCH');
    assert.equal((await refusal(h.services.values.rollback(h.ctx, 'CHANGE_FAILS', 'production'))).code, 'NO_PREVIOUS_VERSION');
    const failed = [...await eventsOf(h, 'secret.write'), ...await eventsOf(h, 'secret.rollback')]
      .filter((e) => e.resource_name === 'CHANGE_FAILS' && e.outcome === 'failed').map((e) => `${e.action} ${e.reason}`).sort();
    assert.deepEqual(failed, ['secret.rollback NO_PREVIOUS_VERSION', 'secret.rollback VALUE_NOT_SET', 'secret.write CAS_MISMATCH']);
    const all = JSON.stringify(await h.storage.db.selectFrom('audit_events').selectAll().where('resource_name', '=', 'CHANGE_FAILS').execute());
    assert.equal(all.includes('change-fails-value-2'), false, 'the refused value is in no event');
  });

  test('a read of a destroyed version is a failed event with VERSION_DESTROYED and the version', async () => {
    await h.services.secrets.destroy(h.ctx, 'STRIPE_KEY', { environment: 'production', versions: [1] });
    assert.equal((await refusal(h.services.values.read(h.ctx, 'STRIPE_KEY', 'production', { version: 1 }))).code, 'VERSION_DESTROYED');
    const e = (await eventsOf(h, 'secret.reveal')).at(-1)!;
    assert.deepEqual([e.outcome, e.reason, e.resource_name, e.secret_version], ['failed', 'VERSION_DESTROYED', 'STRIPE_KEY', 1]);
    assert.equal((await refusal(h.services.values.read(h.ctx, 'STRIPE_KEY', 'production', { label: 'previous' }))).code, 'VERSION_NOT_FOUND');
    assert.deepEqual([(await eventsOf(h, 'secret.reveal')).at(-1)!.outcome, (await eventsOf(h, 'secret.reveal')).at(-1)!.reason], ['failed', 'VERSION_NOT_FOUND']);
  });

  test('a value whose ciphertext no longer opens is a failed event with INTEGRITY_FAILURE, on the labelled and the numbered path', async () => {
    const row = await h.storage.db.selectFrom('secret_versions').innerJoin('secrets', 'secrets.id', 'secret_versions.secret_id')
      .select(['secret_versions.id', 'secret_versions.ciphertext']).where('secrets.name', '=', 'DB_PASSWORD').where('secret_versions.version', '=', 2)
      .executeTakeFirstOrThrow();
    const tampered = Buffer.from(row.ciphertext!);
    tampered[tampered.length - 1]! ^= 0x01;
    await h.storage.db.updateTable('secret_versions').set({ ciphertext: tampered }).where('id', '=', row.id).execute();
    try {
      h.services.rows.clear();
      for (const opts of [{}, { version: 2 }]) {
        assert.equal((await refusal(h.services.values.read(h.ctx, 'DB_PASSWORD', 'production', opts))).code, 'INTEGRITY_FAILURE');
        const e = (await eventsOf(h, 'secret.reveal')).at(-1)!;
        assert.deepEqual([e.outcome, e.reason, e.resource_name, e.secret_version], ['failed', 'INTEGRITY_FAILURE', 'DB_PASSWORD', 2]);
      }
    } finally {
      await h.storage.db.updateTable('secret_versions').set({ ciphertext: row.ciphertext }).where('id', '=', row.id).execute();
      h.services.rows.clear();
    }
    assert.equal((await h.services.values.read(h.ctx, 'DB_PASSWORD', 'production')).value, 'db_password-value-2');
    assert.equal((await h.services.audit.verify()).ok, true);
  });
});
