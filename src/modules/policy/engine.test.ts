import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPolicyEngine, type DecisionRequest } from './engine.ts';

const TENANT = 'engine-test-tenant';

function useRequest(secret: { tags: string[]; owner?: string }, principalName = 'runner'): DecisionRequest {
  return {
    tenantId: TENANT,
    principal: { type: 'machine', id: 'm1', name: principalName, tenantId: TENANT },
    action: 'use',
    resource: { type: 'secret', id: 's1', name: 'CARD_KEY', classification: 'confidential', owner: secret.owner ?? 'ops', tags: secret.tags },
    context: {
      environment: 'production', classification: 'confidential', identityType: 'machine', roles: ['builder'],
      mfaFresh: false, mfaAgeSeconds: -1, hour: 12, weekday: 2, sourceIp: '127.0.0.1',
    },
  };
}

function engineWith(text: string) {
  const engine = createPolicyEngine();
  const checked = engine.validate(text);
  assert.ok(checked.ok, JSON.stringify(checked));
  engine.install(TENANT, 1, checked.policies);
  return engine;
}

test('a cached decision for a tag containing a comma is never reused for the tags it would split into', () => {
  const engine = engineWith('@id("no-pci-use") forbid (principal, action == Keyhold::Action::"use", resource is Keyhold::Secret) when { resource.tags.contains("pci") };');
  assert.equal(engine.decide(useRequest({ tags: ['pci,legacy'] })).allowed, true, 'the one tag "pci,legacy" is not "pci"');
  const retagged = engine.decide(useRequest({ tags: ['pci', 'legacy'] }));
  assert.deepEqual([retagged.allowed, retagged.reasons], [false, ['tenant:no-pci-use']]);
  assert.equal(engine.decide(useRequest({ tags: ['pci,legacy'] })).allowed, true);
});

test('a cached decision is never reused across an owner and tags that print alike, or another principal name', () => {
  const engine = engineWith([
    '@id("no-ops-a") forbid (principal, action, resource is Keyhold::Secret) when { resource.owner == "ops:a" };',
    '@id("no-bot") forbid (principal is Keyhold::Machine, action, resource) when { principal.name == "bot" };',
  ].join('\n'));
  assert.equal(engine.decide(useRequest({ owner: 'ops', tags: ['a'] })).allowed, true);
  assert.equal(engine.decide(useRequest({ owner: 'ops:a', tags: [] })).allowed, false);
  assert.equal(engine.decide(useRequest({ tags: [] }, 'runner')).allowed, true);
  assert.equal(engine.decide(useRequest({ tags: [] }, 'bot')).allowed, false, 'policies may read the principal name');
});

test('a set stored before ids had to be unique loads whole: both policies of a repeated id decide, the forbid included', () => {
  const text = [
    '@id("dup") forbid (principal, action == Keyhold::Action::"use", resource is Keyhold::Secret) when { resource.tags.contains("pci") };',
    '@id("dup") permit (principal, action == Keyhold::Action::"list", resource);',
  ].join('\n');
  const engine = createPolicyEngine();
  assert.equal(engine.validate(text).ok, false, 'refused as a new set');
  const stored = engine.validate(text, 'stored');
  assert.ok(stored.ok, JSON.stringify(stored));
  assert.deepEqual(Object.keys(stored.policies), ['tenant:dup', 'tenant:dup~2']);
  engine.install(TENANT, 1, stored.policies);
  const d = engine.decide(useRequest({ tags: ['pci'] }));
  assert.deepEqual([d.allowed, d.reasons], [false, ['tenant:dup']]);
});

test('a stored set keeps every policy even when a renamed duplicate meets an explicit id of that name', () => {
  const text = [
    '@id("a") permit (principal, action == Keyhold::Action::"list", resource);',
    '@id("a~3") forbid (principal, action == Keyhold::Action::"use", resource is Keyhold::Secret) when { resource.tags.contains("pci") };',
    '@id("a") permit (principal, action == Keyhold::Action::"list", resource);',
  ].join('\n');
  const stored = createPolicyEngine().validate(text, 'stored');
  assert.ok(stored.ok, JSON.stringify(stored));
  assert.equal(Object.keys(stored.policies).length, 3);
  assert.ok(Object.values(stored.policies).some((p) => p.includes('forbid')), 'the forbid is kept');
});
