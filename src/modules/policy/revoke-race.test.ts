import { after, before, test } from 'node:test';
import type { KyselyPlugin } from 'kysely';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { pauseAfterRead } from '../../../test/helpers/pause-after-read.ts';
import { createCedarAuthorizer } from './cedar-authorizer.ts';
import { createPolicyEngine } from './engine.ts';
import { machineContext } from '../../../test/helpers/identities.ts';
import { frozenResource } from '../secrets/read-views.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';


/**
 * A machine of the tenant with `builder` in production, the frozen view of RACE the read path uses
 * (read-views.ts), and an authorizer whose first `select ... from <table>` is held until released
 * (an in-flight query, as on a busy PostgreSQL pool).
 */
async function raceRig(h: Harness, machineName: string, table: string) {
  const { machine, grant, ctx: actingAs } = await machineContext(h, machineName, { role: 'builder', environments: ['production'] });
  const ctx = actingAs();
  const resource = frozenResource(await h.services.secrets.load(h.ctx, 'RACE'));
  let release!: () => void;
  let reached!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const hit = new Promise<void>((r) => (reached = r));
  const held = pauseAfterRead(table, () => {
    reached();
    return released;
  });
  const authz = createCedarAuthorizer({
    db: h.storage.db.withPlugin(held), engine: createPolicyEngine(), clock: h.clock, audit: h.services.audit,
    identifiers: h.services.identifiers, stepUpWindowMs: 600_000,
  });
  return { machine, grant, ctx, resource, authz, hit, release };
}

/**
 * A decision reads a principal's grants; a revoke commits and drops the cache while that read is
 * still in flight. The in-flight decision may still allow (it raced the revoke), but its allow must
 * not be remembered into the tenant's new state, where it would outlive the grant for up to an hour.
 */
describeEachDialect('a revoke racing an in-flight decision', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'RACE', owner: 'ops' });
  });
  after(() => h.close());

  test('no later decision allows: the in-flight allow is not remembered in the new state', async () => {
    const { grant, ctx, resource, authz, hit, release } = await raceRig(h, 'race-runner', 'grants');
    const inFlight = codeOf(authz.require(ctx, 'use', resource, 'production'));
    await hit; // the grants row was read while still live
    // The revoke commits; the grant service then drops this process's cache (its finally), as it does in production.
    await h.services.grants.revoke(h.ctx, grant.id);
    authz.invalidate(h.ctx.tenantId);
    release();
    assert.equal(await inFlight, 'ok', 'the in-flight decision itself races the revoke (acceptable)');

    // Every later decision comes after the revoke committed and after invalidate: it must be a deny.
    h.clock.advance(1_000);
    const decisions: string[] = [];
    decisions.push(await codeOf(authz.require(ctx, 'use', resource, 'production')));
    // Half an hour later, still the same generation: a fresh decision refreshes the tenant state, and then...
    h.clock.advance(30 * 60_000);
    decisions.push(await codeOf(authz.require(ctx, 'use', resource, 'production')));
    decisions.push(await codeOf(authz.require(ctx, 'use', resource, 'production')));
    assert.deepEqual(decisions, ['FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN'], 'a revoked grant must never allow again');
  });
});

/**
 * The same race one step earlier: the tenant's state (generation, policy set, escrow rules) is
 * being loaded when a policy change commits and drops the cache. The load read the old generation;
 * cached after the drop, it would serve the old policies (and remember allows under them) until
 * the next generation check, though a change made on this node must take effect at once.
 */
describeEachDialect('a policy change racing an in-flight load of the tenant state', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'RACE', owner: 'ops' });
  });
  after(() => h.close());

  test('the next decision after the change is decided under the new policies', async () => {
    const { machine, ctx, resource, authz, hit, release } = await raceRig(h, 'load-race-runner', 'tenants');
    const inFlight = codeOf(authz.require(ctx, 'use', resource, 'production'));
    await hit; // the generation was read before the change
    const forbid = `@id("no-race-use")\nforbid(principal == Keyhold::Machine::"${machine.id}", action == Keyhold::Action::"use", resource);`;
    await h.services.policies.put(h.ctx, { text: forbid, comment: 'forbid the runner' });
    authz.invalidate(h.ctx.tenantId);
    release();
    await inFlight; // raced the change: either answer is acceptable for it

    h.clock.advance(1_000);
    assert.equal(await codeOf(authz.require(ctx, 'use', resource, 'production')), 'FORBIDDEN');
    await h.services.policies.put(h.ctx, { text: '', comment: 'lift it' });
  });

  test('an overtaken load finishing after a newer one was kept does not put its older policy set back into the engine', async () => {
    const { machine, ctx, resource, authz, hit, release } = await raceRig(h, 'install-race-runner', 'tenants');
    const inFlight = codeOf(authz.require(ctx, 'use', resource, 'production'));
    await hit; // the old generation was read; its policies are loaded after the release
    const forbid = `@id("no-install-race-use")\nforbid(principal == Keyhold::Machine::"${machine.id}", action == Keyhold::Action::"use", resource);`;
    await h.services.policies.put(h.ctx, { text: forbid, comment: 'forbid the runner' });
    authz.invalidate(h.ctx.tenantId);
    // A decision after the change loads the new generation, installs its policy set and keeps the state.
    assert.equal(await codeOf(authz.require(ctx, 'use', resource, 'production')), 'FORBIDDEN');
    release();
    await inFlight; // overtaken: it decides itself, and must leave the newer policy set installed

    // Served from the kept state (within its 2 s): the engine's policy set must still be the new one.
    assert.equal(await codeOf(authz.require(ctx, 'use', resource, 'production')), 'FORBIDDEN');
    await h.services.policies.put(h.ctx, { text: '', comment: 'lift it' });
  });
});

/**
 * Changes landing during every load of the tenant state: no load is ever kept, yet every decision
 * is made (each overlapped a change, so either side of it is a fair answer) and none is a 503.
 */
describeEachDialect('grant and policy changes during every load of the tenant state', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'RACE', owner: 'ops' });
  });
  after(() => h.close());

  /** An authorizer that sees a change commit in this process during each of its first `changes` reads. */
  async function churnRig(machineName: string, changes: number) {
    const { ctx, resource } = await raceRig(h, machineName, 'no_such_table');
    let left = changes;
    let reads = 0;
    let authz!: ReturnType<typeof createCedarAuthorizer>;
    const churn: KyselyPlugin = {
      transformQuery: ({ node }) => node,
      async transformResult({ result }) {
        reads++;
        if (left > 0) {
          left--;
          authz.invalidate(h.ctx.tenantId);
        }
        return result;
      },
    };
    authz = createCedarAuthorizer({
      db: h.storage.db.withPlugin(churn), engine: createPolicyEngine(), clock: h.clock, audit: h.services.audit,
      identifiers: h.services.identifiers, stepUpWindowMs: 600_000,
    });
    return { ctx, resource, authz, reads: () => reads, stop: () => { left = 0; } };
  }

  test('changes that never stop: every decision is still made, and none of those loads is kept', async () => {
    const rig = await churnRig('stream-runner', Number.POSITIVE_INFINITY);
    const before = rig.reads();
    for (let i = 0; i < 20; i++) assert.equal(await codeOf(rig.authz.require(rig.ctx, 'use', rig.resource, 'production')), 'ok');
    const perDecision = (rig.reads() - before) / 20;
    assert.ok(perDecision >= 1, 'each decision loaded the tenant state again: nothing overtaken was cached');

    rig.stop();
    await rig.authz.require(rig.ctx, 'use', rig.resource, 'production');
    const quiet = rig.reads();
    for (let i = 0; i < 20; i++) await rig.authz.require(rig.ctx, 'use', rig.resource, 'production');
    assert.equal(rig.reads() - quiet, 0, 'once the changes stop, a load is kept and decisions are served from it');
  });

  test('a change made while denials churn takes effect for the next decision', async () => {
    const rig = await churnRig('churn-then-forbid', Number.POSITIVE_INFINITY);
    assert.equal(await codeOf(rig.authz.require(rig.ctx, 'use', rig.resource, 'production')), 'ok');
    const forbid = `@id("no-churn-use")\nforbid(principal == Keyhold::Machine::"${rig.ctx.actor.id}", action == Keyhold::Action::"use", resource);`;
    await h.services.policies.put(h.ctx, { text: forbid, comment: 'forbid the runner' });
    rig.authz.invalidate(h.ctx.tenantId);
    assert.equal(await codeOf(rig.authz.require(rig.ctx, 'use', rig.resource, 'production')), 'FORBIDDEN');
    await h.services.policies.put(h.ctx, { text: '', comment: 'lift it' });
    rig.authz.invalidate(h.ctx.tenantId);
  });
});
