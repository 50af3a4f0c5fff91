import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { until } from '../../../test/helpers/deadline.ts';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { createTokenService } from '../auth/token-service.ts';
import { createCedarAuthorizer } from '../policy/cedar-authorizer.ts';
import { createPolicyEngine } from '../policy/engine.ts';
import type { Storage } from '../../storage/database.ts';
import { createSealedRowCache, type SealedRow } from '../secrets/sealed-row-cache.ts';
import { createInvalidationBus, type InvalidationBus } from './bus.ts';
import { sharedSealedRows } from './sealed-rows.ts';
import { sharedKeyring } from './keyring.ts';
import { createKeyring } from '../../crypto/keyring.ts';
import { createKekRepository } from '../keys/kek-repository.ts';

/** How long a message may take from one node to the other here; far below the caches' own bounds, which the fake clock never reaches. */
const DELIVERY_MS = 5_000;

const delivered = (what: string, check: () => boolean | Promise<boolean>) => until(what, check, DELIVERY_MS);

/** `bus`, and how many gaps it has reported so far (listening started or restarted). */
function counted(bus: InvalidationBus): { bus: InvalidationBus; gaps: () => number } {
  let gaps = 0;
  bus.subscribe({ onMessage: () => {}, onGap: () => void gaps++ });
  return { bus, gaps: () => gaps };
}

/**
 * SPEC §13: caches invalidated across nodes. Node A is the harness; node B is a second token
 * service and authorizer over its own connections to the same schema, each with a bus. The fake
 * clock never moves in these tests, so no cache entry runs out: whatever B stops admitting, it
 * stops admitting because A's message reached it.
 */
describeEachDialect('caches invalidated across nodes', (dialect) => {
  let h: Harness;
  let storageB: Storage;
  let a: ReturnType<typeof counted>;
  let b: ReturnType<typeof counted>;
  const errors: unknown[] = [];
  /** Every payload on the schema's channel, as any role on the database could LISTEN to it. */
  const wire: string[] = [];
  let storageTap: Storage;
  let nodeB: { tokens: ReturnType<typeof createTokenService>; authz: ReturnType<typeof createCedarAuthorizer> };

  before(async () => {
    h = await createHarness(dialect);
    storageB = await h.database.open();
    // The harness's own services already subscribe to theirs: node A listens through it.
    a = counted(h.services.peers);
    b = counted(createInvalidationBus({ notifications: storageB.notifications, onError: (err) => void errors.push(err) }));
    nodeB = {
      tokens: createTokenService({ db: storageB.db, dialect, clock: h.clock, peers: b.bus }),
      authz: createCedarAuthorizer({
        db: storageB.db, engine: createPolicyEngine(), clock: h.clock, stepUpWindowMs: 600_000, audit: h.services.audit, identifiers: h.services.identifiers, peers: b.bus,
      }),
    };
    storageTap = await h.database.open();
    let tapping = false;
    storageTap.notifications?.listen({ onMessage: (p) => void wire.push(p), onGap: () => void (tapping = true), onError: () => {} });
    a.bus.start();
    b.bus.start();
    if (dialect === 'postgres') await delivered('both nodes and the tap listening', () => a.gaps() > 0 && b.gaps() > 0 && tapping);
  });
  after(async () => {
    await storageTap?.close();
    await storageB?.close();
    await h?.close();
  });

  async function liveTokenOnB(name: string) {
    const m = await h.services.machines.create(h.ctx, { name: `${name}-${dialect}`, kind: 'client_secret' });
    const issued = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: m.id, name: m.name, ttlMs: 3_600_000 });
    assert.ok(await nodeB.tokens.authenticate(issued.token));
    assert.ok(nodeB.tokens.cached(issued.token), 'node B holds the token in its cache');
    return { machine: m, issued };
  }

  if (dialect === 'sqlite') {
    test('SQLite has one node: no notifications, and the caches keep their time bounds alone', () => {
      assert.equal(h.storage.notifications, null);
      assert.equal(storageB.notifications, null);
    });
    return;
  }

  describe('a change on node A reaches node B at once, not when its cache entry runs out', () => {
    test('a revoked token', async () => {
      const { issued } = await liveTokenOnB('revoked-b');
      await h.services.machines.revokeToken(h.ctx, issued.id);
      await delivered('node B dropped the revoked token', () => nodeB.tokens.cached(issued.token) === undefined);
      assert.equal(await nodeB.tokens.authenticate(issued.token), null);
    });

    test('every token of a disabled identity', async () => {
      const { machine, issued } = await liveTokenOnB('disabled-b');
      const second = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: machine.id, name: machine.name, ttlMs: 3_600_000 });
      assert.ok(await nodeB.tokens.authenticate(second.token));
      await h.services.machines.disable(h.ctx, machine.id);
      await delivered('node B dropped the identity\'s tokens', () => [issued, second].every((t) => nodeB.tokens.cached(t.token) === undefined));
      for (const t of [issued, second]) assert.equal(await nodeB.tokens.authenticate(t.token), null);
    });

    test('a revoked grant: node B\'s cached decision goes with it', async () => {
      const gus = await userContext(h, h.ctx.tenantId, `gus-${dialect}`);
      const grant = await h.services.grants.create(h.ctx, { principalType: 'user', principalId: gus.id, role: 'builder' });
      const tenant = { type: 'tenant' } as const;
      assert.equal(await nodeB.authz.allowed(gus.ctx(), 'list', tenant), true, 'node B decides from the live grant, and remembers');
      await h.services.grants.revoke(h.ctx, grant.id);
      await delivered('node B refuses', async () => !(await nodeB.authz.allowed(gus.ctx(), 'list', tenant)));
    });

    test('a value written: node B drops the tenant\'s sealed rows and its redactor, and does not tell anyone the secret\'s name', async () => {
      const droppedRedactors: string[] = [];
      const rowsB = sharedSealedRows(createSealedRowCache({ clock: h.clock, ttlMs: 60_000, maxEntries: 100 }), b.bus, (tenantId) => void droppedRedactors.push(tenantId));
      const other = await h.services.tenants.create(`values-other-${dialect}`);
      const row = { secret_id: 's', name: 'WRITTEN_ON_A', version: 1 } as SealedRow;
      rowsB.set(h.ctx.tenantId, 'env', 'WRITTEN_ON_A', 'current', row, rowsB.stamp(h.ctx.tenantId, 'WRITTEN_ON_A'));
      rowsB.set(other.id, 'env', 'ELSEWHERE', 'current', row, rowsB.stamp(other.id, 'ELSEWHERE'));
      await h.services.secrets.create(h.ctx, { name: 'WRITTEN_ON_A', owner: 'ops' });
      await h.services.values.write(h.ctx, 'WRITTEN_ON_A', 'production', { value: 'cross-node-value' });
      await delivered('node B dropped the tenant\'s rows', () => rowsB.get(h.ctx.tenantId, 'env', 'WRITTEN_ON_A', 'current') === undefined);
      assert.ok(droppedRedactors.includes(h.ctx.tenantId), 'and its redactor');
      assert.ok(rowsB.get(other.id, 'env', 'ELSEWHERE', 'current'), 'another tenant\'s rows stay');
      await delivered('the wire tap heard the write\'s message', () => wire.some((p) => p.includes('"values"')));
      assert.deepEqual(wire.filter((p) => /WRITTEN_ON_A|cross-node-value/.test(p)), [], 'no name or value on the wire');
    });

    test('a KEK rotated: node B drops the tenant\'s unwrapped keys at once, not when their lifetime ends', async () => {
      const keyringB = sharedKeyring(createKeyring({
        store: createKekRepository(storageB.db), root: h.services.seal, dekCache: { ttlMs: 60_000, maxEntries: 100, now: () => h.clock.now() },
      }), b.bus);
      await h.services.secrets.create(h.ctx, { name: 'KEYED_ON_A', owner: 'ops' });
      await h.services.values.write(h.ctx, 'KEYED_ON_A', 'production', { value: 'keyed-on-a-value' });
      const v = await storageB.db.selectFrom('secret_versions').innerJoin('secrets', 'secrets.id', 'secret_versions.secret_id')
        .select(['secret_versions.tenant_id', 'secret_versions.environment_id', 'secret_versions.secret_id', 'secret_versions.version', 'secret_versions.ciphertext', 'secret_versions.wrapped_dek'])
        .where('secrets.tenant_id', '=', h.ctx.tenantId).where('secrets.name', '=', 'KEYED_ON_A').executeTakeFirstOrThrow();
      const opened = await keyringB.openValue({ tenantId: v.tenant_id, environmentId: v.environment_id, secretId: v.secret_id, version: v.version }, v.ciphertext!, v.wrapped_dek!);
      assert.equal(opened.toString('utf8'), 'keyed-on-a-value');
      assert.ok(keyringB.held().keks > 0 && keyringB.held().deks > 0, 'node B holds the tenant\'s KEK and the value\'s data key');
      await h.services.keys.rotate(h.ctx);
      await delivered('node B dropped them', () => keyringB.held().keks === 0 && keyringB.held().deks === 0);
    });

    test('a tenant policy that forbids: node B applies it without waiting for its generation check', async () => {
      const ida = await userContext(h, h.ctx.tenantId, `ida-${dialect}`);
      await h.services.grants.create(h.ctx, { principalType: 'user', principalId: ida.id, role: 'builder' });
      const tenant = { type: 'tenant' } as const;
      assert.equal(await nodeB.authz.allowed(ida.ctx(), 'list', tenant), true);
      await h.services.policies.put(h.ctx, { text: 'forbid (principal, action == Keyhold::Action::"list", resource);', comment: 'no listing' });
      await delivered('node B applies the new policy', async () => !(await nodeB.authz.allowed(ida.ctx(), 'list', tenant)));
    });
  });

  test('a node whose listening connection drops drops its caches when it listens again, and hears the next change', async () => {
    const { issued } = await liveTokenOnB('gap-b');
    const channel = (await sql<{ c: string }>`select 'keyhold_' || left(md5(current_schema()), 24) as c`.execute(storageB.db)).rows[0]!.c;
    const gapsBefore = b.gaps();
    // Both nodes' listeners, and only theirs: other test files listen on channels of their own schemas.
    const killed = await sql<{ pid: number }>`select pg_terminate_backend(pid) as ok, pid from pg_stat_activity where query = ${`listen ${channel}`}`.execute(storageB.db);
    assert.equal(killed.rows.length, 3, 'one listener per node, and the tap');
    await delivered('node B listens again', () => b.gaps() > gapsBefore);
    assert.equal(nodeB.tokens.cached(issued.token), undefined, 'what it cached before the gap is dropped: messages may have been missed');
    assert.ok(errors.length > 0, 'the lost connection was reported');
    // Listening again: the next revocation arrives as before.
    assert.ok(await nodeB.tokens.authenticate(issued.token));
    await delivered('node A listens again', () => a.gaps() > 1);
    await h.services.machines.revokeToken(h.ctx, issued.id);
    await delivered('node B heard the revocation after reconnecting', () => nodeB.tokens.cached(issued.token) === undefined);
  });

  test('nothing any of that sent on the wire is a credential or value this node saw', () => {
    assert.ok(wire.length >= 5, `the tap heard the messages (${wire.length})`);
    const findings = h.canaries.findIn(wire.map((text, i) => ({ where: `payload ${i + 1}`, text })));
    assert.deepEqual(findings, []);
  });
});
