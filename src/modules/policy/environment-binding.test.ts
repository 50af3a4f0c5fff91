import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ACTIONS } from './actions.ts';
import { outsideBinding } from './environment-binding.ts';

test('a credential bound to staging is outside its binding in every other environment and for every env-less action but list', () => {
  const bound = { boundEnvironment: 'staging' };
  for (const action of ACTIONS) {
    assert.equal(outsideBinding(bound, action, 'staging'), false, `${action} in staging`);
    assert.equal(outsideBinding(bound, action, 'production'), true, `${action} in production`);
    assert.equal(outsideBinding(bound, action, undefined), action !== 'list', `${action} without an environment`);
  }
});

test('an unbound credential is never outside a binding', () => {
  for (const action of ACTIONS) for (const env of ['staging', 'production', undefined]) assert.equal(outsideBinding({}, action, env), false);
});
