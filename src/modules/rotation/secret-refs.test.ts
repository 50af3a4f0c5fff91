import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { rotationFor, scriptedRotator } from '../../../test/helpers/rotation.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

const ENV = 'production';
const CROWN_JEWEL = 'sk_live_crown_jewel_4242';

/**
 * Rotator settings that name other secrets (http `tokenSecret`, postgres `adminPasswordSecret`) are
 * resolved at run time by Keyhold itself and sent to the host the settings name. Setting such a
 * policy therefore needs `use` of each named secret, in the policy's environment.
 */
describeEachDialect('rotation: secrets named in rotator settings', (dialect) => {
  let h: Harness;
  let server: Server;
  let url = '';
  /** The Authorization header of every request the rotation endpoint received. */
  const seen: string[] = [];
  let n = 0;
  const rotation = () => h.services.rotation.service;
  /** A narrowed rotation-operator of TEAM_A_* in production (second factor fresh). */
  async function operator(extra: Array<{ role: string; namePatterns: string[]; environments?: string[] }> = []) {
    const op = await userContext(h, h.ctx.tenantId, `team-a-operator-${++n}`);
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: op.id, role: 'rotation-operator', environments: [ENV], namePatterns: ['TEAM_A_*'] });
    for (const g of extra) await h.services.grants.create(h.ctx, { principalType: 'user', principalId: op.id, role: g.role, environments: g.environments ?? [ENV], namePatterns: g.namePatterns });
    return op;
  }
  /** A fresh TEAM_A_ secret with a value, so tests never share a policy. */
  async function teamSecret() {
    const name = `TEAM_A_KEY_${++n}`;
    await h.services.secrets.create(h.ctx, { name, owner: 'team-a' });
    await h.services.values.write(h.ctx, name, ENV, { value: `team-a-old-${n}` });
    return name;
  }
  const events = (where: { actorId: string; action?: string }) => {
    let q = h.storage.db.selectFrom('audit_events').selectAll().where('actor_id', '=', where.actorId);
    if (where.action) q = q.where('action', '=', where.action);
    return q.orderBy('seq').execute();
  };

  before(async () => {
    h = await createHarness(dialect);
    server = createServer((req, res) => {
      seen.push(String(req.headers.authorization ?? ''));
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ id: `cred-${seen.length}`, value: `new-team-a-value-${seen.length}` }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/rot`;
    await h.services.secrets.create(h.ctx, { name: 'PAYMENT_PROCESSOR_API_KEY', owner: 'payments', classification: 'restricted' });
    await h.services.values.write(h.ctx, 'PAYMENT_PROCESSOR_API_KEY', ENV, { value: CROWN_JEWEL });
  });
  beforeEach(() => {
    seen.length = 0;
  });
  after(async () => {
    server.close();
    await h.close();
  });

  const referencing = [
    { rotator: 'http', field: 'tokenSecret', settings: (ref: string) => ({ url: () => url, tokenSecret: ref }) },
    { rotator: 'postgres', field: 'adminPasswordSecret', settings: (ref: string) => ({ host: '127.0.0.1', database: 'app', adminUser: 'admin', role: 'app', adminPasswordSecret: ref }) },
  ];
  const settingsOf = (c: (typeof referencing)[number], ref: string) =>
    Object.fromEntries(Object.entries(c.settings(ref)).map(([k, v]) => [k, typeof v === 'function' ? v() : v])) as Record<string, unknown>;

  for (const c of referencing) {
    test(`a rotation-operator of TEAM_A_* cannot name a secret they may not use in ${c.rotator}'s ${c.field}: refused as a miss, audited, nothing sent`, async () => {
      const op = await operator();
      const name = await teamSecret();
      const err = await rotation().setPolicy(op.ctx(), name, ENV, { rotator: c.rotator, settings: settingsOf(c, 'PAYMENT_PROCESSOR_API_KEY') }).then(() => null, (e: Error & { code: string }) => e);
      assert.equal(err?.code, 'SECRET_NOT_FOUND', 'the operator may not even list the payment key: its existence is not confirmed');
      assert.match(err!.message, new RegExp(`^settings\\.${c.field}: `), 'the message names the setting');
      assert.equal(await codeOf(rotation().getPolicy(h.ctx, name, ENV)), 'ROTATION_POLICY_NOT_FOUND', 'no policy was stored');
      assert.equal(await codeOf(rotation().rotate(op.ctx(), name, ENV)), 'ROTATION_POLICY_NOT_FOUND');
      assert.deepEqual(seen, [], 'nothing reached the endpoint');
      const [denial] = await events({ actorId: op.id, action: 'authz.use' });
      assert.deepEqual([denial?.outcome, denial?.resource_name, denial?.environment], ['denied', 'PAYMENT_PROCESSOR_API_KEY', ENV], 'the refusal is an audit event');
      assert.equal((await events({ actorId: op.id, action: 'rotation.policy.set' })).length, 0);
    });
  }

  test('an operator who may list but not use the named secret is refused with FORBIDDEN, audited', async () => {
    const op = await operator([{ role: 'viewer', namePatterns: ['PAYMENT_*'] }]);
    const name = await teamSecret();
    assert.equal(await codeOf(rotation().setPolicy(op.ctx(), name, ENV, { rotator: 'http', settings: { url, tokenSecret: 'PAYMENT_PROCESSOR_API_KEY' } })), 'FORBIDDEN');
    const [denial] = await events({ actorId: op.id, action: 'authz.use' });
    assert.equal(denial?.outcome, 'denied');
    assert.deepEqual(seen, []);
  });

  test('a named secret that does not exist is refused exactly like one the caller may not see, and audited without its name', async () => {
    const op = await operator();
    const name = await teamSecret();
    const missing = await rotation().setPolicy(op.ctx(), name, ENV, { rotator: 'http', settings: { url, tokenSecret: 'NO_SUCH_TOKEN' } }).then(() => null, (e: Error & { code: string }) => e);
    const hidden = await rotation().setPolicy(op.ctx(), name, ENV, { rotator: 'http', settings: { url, tokenSecret: 'PAYMENT_PROCESSOR_API_KEY' } }).then(() => null, (e: Error & { code: string }) => e);
    assert.equal(missing?.code, 'SECRET_NOT_FOUND');
    assert.equal(missing?.message.replace('NO_SUCH_TOKEN', 'X'), hidden?.message.replace('PAYMENT_PROCESSOR_API_KEY', 'X'), 'one answer for "missing" and "not yours"');
    const [miss] = await events({ actorId: op.id, action: 'rotation.policy.set' });
    assert.deepEqual([miss?.outcome, miss?.reason, miss?.resource_name], ['failed', 'SECRET_NOT_FOUND', h.services.identifiers.hash('NO_SUCH_TOKEN')]);
  });

  test('use of the named secret in another environment does not count for this one', async () => {
    const op = await operator([{ role: 'builder', namePatterns: ['PAYMENT_*'], environments: ['staging'] }]);
    const name = await teamSecret();
    assert.equal(await codeOf(rotation().setPolicy(op.ctx(), name, ENV, { rotator: 'http', settings: { url, tokenSecret: 'PAYMENT_PROCESSOR_API_KEY' } })), 'FORBIDDEN');
    assert.equal(await codeOf(rotation().getPolicy(h.ctx, name, ENV)), 'ROTATION_POLICY_NOT_FOUND');
    const [denial] = await events({ actorId: op.id, action: 'authz.use' });
    assert.deepEqual([denial?.outcome, denial?.environment], ['denied', ENV]);
  });

  test('changing an allowed policy to name a forbidden secret is refused and leaves the policy as it was', async () => {
    const op = await operator([{ role: 'builder', namePatterns: ['TEAM_A_*'] }]);
    const name = await teamSecret();
    const token = await teamSecret();
    const first = await rotation().setPolicy(op.ctx(), name, ENV, { rotator: 'http', settings: { url, tokenSecret: token } });
    assert.equal(await codeOf(rotation().setPolicy(op.ctx(), name, ENV, { rotator: 'http', settings: { url, tokenSecret: 'PAYMENT_PROCESSOR_API_KEY' }, revision: first.revision })), 'SECRET_NOT_FOUND');
    const now = await rotation().getPolicy(h.ctx, name, ENV);
    assert.deepEqual([now.revision, now.settings.tokenSecret], [first.revision, token]);
  });

  test('an operator who may use both secrets sets the policy and rotates; the policy records who set it', async () => {
    const op = await operator([{ role: 'builder', namePatterns: ['PAYMENT_*'] }]);
    const name = await teamSecret();
    const policy = await rotation().setPolicy(op.ctx(), name, ENV, { rotator: 'http', settings: { url, tokenSecret: 'PAYMENT_PROCESSOR_API_KEY' } });
    assert.equal(policy.updatedBy, op.id);
    const [set] = await events({ actorId: op.id, action: 'rotation.policy.set' });
    assert.equal(JSON.parse(set!.context!).secretRefs, 'tokenSecret=PAYMENT_PROCESSOR_API_KEY', 'the event names the secrets the policy relies on');
    const r = await rotation().rotate(op.ctx(), name, ENV);
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
    assert.ok(seen.includes(`Bearer ${CROWN_JEWEL}`), 'the endpoint got the token the operator may use');
    assert.equal((await h.services.values.read(h.ctx, name, ENV)).value.startsWith('new-team-a-value-'), true);
  });

  test('the run resolves a named secret only in the policy\'s environment', async () => {
    const name = await teamSecret();
    await h.services.secrets.create(h.ctx, { name: 'STAGING_ONLY_TOKEN', owner: 'ops' });
    await h.services.values.write(h.ctx, 'STAGING_ONLY_TOKEN', 'staging', { value: 'staging-token-value' });
    await rotation().setPolicy(h.ctx, name, ENV, { rotator: 'http', settings: { url, tokenSecret: 'STAGING_ONLY_TOKEN' } });
    const r = await rotation().rotate(h.ctx, name, ENV);
    assert.deepEqual([r.state, r.error?.code, r.error?.step], ['rolled_back', 'ROTATOR_ERROR', 'generate']);
    assert.match(r.error!.detail, /has no value in production/);
    assert.ok(!seen.some((s) => s.includes('staging-token-value')), 'the staging value never left for a production rotation');
  });

  test('a policy cannot name a secret of another tenant', async () => {
    const other = await h.services.tenants.create('rotation-refs-other');
    const otherCtx = h.contextFor(other.id);
    await h.services.secrets.create(otherCtx, { name: 'OTHER_TENANT_TOKEN', owner: 'ops' });
    await h.services.values.write(otherCtx, 'OTHER_TENANT_TOKEN', ENV, { value: 'other-tenant-token' });
    const name = await teamSecret();
    assert.equal(await codeOf(rotation().setPolicy(h.ctx, name, ENV, { rotator: 'http', settings: { url, tokenSecret: 'OTHER_TENANT_TOKEN' } })), 'SECRET_NOT_FOUND');
    assert.deepEqual(seen, []);
  });

  test('at run time a rotator resolves only the secrets it declares for the stored settings', async () => {
    const sneaky = scriptedRotator('sneaky', {
      generate: async (rc) => ({ value: await rc.resolve('PAYMENT_PROCESSOR_API_KEY'), state: {} }),
    });
    const rot = rotationFor(h, { rotators: [sneaky] });
    const name = await teamSecret();
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'sneaky' });
    const r = await rot.service.rotate(h.ctx, name, ENV);
    assert.deepEqual([r.state, r.error?.code, r.error?.step], ['rolled_back', 'ROTATOR_ERROR', 'generate']);
    assert.notEqual((await h.services.values.read(h.ctx, name, ENV)).value, CROWN_JEWEL);
  });

  test('a rollback after the fact resolves only the secrets the rotator declares, too', async () => {
    const leaked: string[] = [];
    const sneaky = scriptedRotator('sneaky-rollback', {
      apply: async (rc) => {
        if (rc.rotationId === 'rollback') leaked.push(await rc.resolve('PAYMENT_PROCESSOR_API_KEY'));
      },
    });
    const rot = rotationFor(h, { rotators: [sneaky] });
    const name = await teamSecret();
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'sneaky-rollback' });
    assert.equal((await rot.service.rotate(h.ctx, name, ENV)).state, 'succeeded');
    await assert.rejects(rot.service.rollback(h.ctx, name, ENV));
    assert.deepEqual(leaked, [], 'the undeclared secret was not handed to the rotator');
    assert.equal((await h.services.values.history(h.ctx, name, ENV)).find((v) => v.labels.includes('current'))?.version, 2, 'no label moved');
  });
});
