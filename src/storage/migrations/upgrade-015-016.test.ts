import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sign } from 'node:crypto';
import { Kysely, sql } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createUnmigratedDatabase } from '../../../test/helpers/databases.ts';
import type { Database } from '../schema.ts';
import { createAuditLog } from '../../modules/audit/audit-log.ts';
import { checkpointMessage } from '../../modules/audit/checkpoint-format.ts';
import { deriveSigningKey, publicKeyText } from '../../modules/audit/checkpoints.ts';
import { toKeyObject } from '../../crypto/aead.ts';
import { randomKey } from '../../crypto/bytes.ts';

/**
 * 015 moves TOTP enrolments that were started and never confirmed to their own column; 016 links
 * checkpoints. Both run on databases that already hold users and signed checkpoints.
 */
describeEachDialect('upgrading through 015 and 016 keeps factors and checkpoints as they were', (dialect) => {
  let fresh: Awaited<ReturnType<typeof createUnmigratedDatabase>>;
  let db: Kysely<Database>;
  before(async () => {
    fresh = await createUnmigratedDatabase(dialect);
    db = fresh.db;
  });
  after(() => fresh.close());

  test('an unconfirmed enrolment becomes pending, a confirmed factor stays, and an old checkpoint still verifies', async () => {
    const { upTo } = fresh;
    await upTo('014-audit-tenant-seq');

    const now = Date.UTC(2026, 5, 1);
    await db.insertInto('tenants').values({ id: 't1', name: 'upgrade', created_at: now, kek_version: 1, kek_min_version: 1, policy_version: 0, authz_generation: 0 }).execute();
    const user = (id: string, secret: Uint8Array | null, enabled: number, lastStep: number | null) => ({
      id, tenant_id: 't1', username: id, password_hash: '$argon2id$unused', totp_secret: secret, totp_enabled: enabled, totp_last_step: lastStep,
      created_at: now, password_changed_at: now, disabled_at: null,
    });
    const confirmed = new Uint8Array([1, 2, 3, 4]);
    const started = new Uint8Array([9, 8, 7, 6]);
    // Written as the old schema had them (no totp_pending_secret column yet).
    await (db as unknown as Kysely<Record<string, Record<string, unknown>>>).insertInto('users').values([
      user('confirmed', confirmed, 1, 123), user('started', started, 0, null), user('none', null, 0, null),
    ]).execute();

    const log = createAuditLog({ db, clock: { now: () => now } });
    await db.transaction().execute((trx) => log.appendInTx(trx, [{ tenantId: null, actor: { type: 'system', id: 'upgrade-test' }, action: 'test.event', resource: { type: 'tenant', id: null, name: null }, outcome: 'allowed' }]));
    const head = await db.selectFrom('audit_head').select(['seq', 'hash']).executeTakeFirstOrThrow();
    const keys = deriveSigningKey(toKeyObject(randomKey()));
    const publicKey = publicKeyText(keys.publicKey);
    const v1 = { seq: head.seq, hash: head.hash, time: now, signature: sign(null, checkpointMessage(head.seq, head.hash, now, null), keys.privateKey).toString('base64'), public_key: publicKey };
    await (db as unknown as Kysely<Record<string, Record<string, unknown>>>).insertInto('audit_checkpoints').values(v1).execute();

    await upTo('016-audit-checkpoint-links');

    const users = await db.selectFrom('users').select(['id', 'totp_secret', 'totp_enabled', 'totp_last_step', 'totp_pending_secret']).orderBy('id').execute();
    const bytes = (b: Uint8Array | null) => (b === null ? null : [...b]);
    assert.deepEqual(users.map((u) => [u.id, bytes(u.totp_secret), u.totp_enabled, u.totp_last_step === null ? null : Number(u.totp_last_step), bytes(u.totp_pending_secret)]), [
      ['confirmed', [1, 2, 3, 4], 1, 123, null],
      ['none', null, 0, null, null],
      ['started', null, 0, null, [9, 8, 7, 6]],
    ]);

    const cp = await db.selectFrom('audit_checkpoints').selectAll().executeTakeFirstOrThrow();
    assert.equal(cp.prev_seq, null, 'signed before links existed');
    const r = await log.verify({ trustedPublicKey: publicKey });
    assert.equal(r.ok, true, r.ok ? '' : r.problem);
    if (dialect === 'sqlite') {
      await assert.rejects(sql`insert or replace into audit_checkpoints select * from audit_checkpoints`.execute(db), /append-only/);
    }

    // 021: an enrolment started before tickets existed (020) is dropped: confirming it would give a first factor without one.
    await upTo(null);
    const after = await db.selectFrom('users').select(['id', 'totp_enabled', 'totp_pending_secret', 'factor_epoch']).orderBy('id').execute();
    assert.deepEqual(after.map((u) => [u.id, u.totp_enabled, u.totp_pending_secret, Number(u.factor_epoch)]), [
      ['confirmed', 1, null, 0], ['none', 0, null, 0], ['started', 0, null, 0],
    ]);
  });
});
