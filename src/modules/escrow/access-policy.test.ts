import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkAccessPolicy, membersOf, type AccessPolicyDocument } from './access-policy.ts';

test('a step naming a group the document does not define is an error, also when the name is one every object inherits ("constructor")', () => {
  for (const name of ['constructor', 'missing']) {
    const checked = checkAccessPolicy({ groups: { leads: ['alice'] }, rules: [{ id: 'r', actions: ['reveal'], steps: [{ groups: [name], approvals: 1 }] }] });
    assert.equal(checked.ok, false, name);
    assert.deepEqual(!checked.ok && checked.errors, [`rule "r" step 1: no group "${name}"`]);
  }
});

test('membersOf reads only groups the document defines', () => {
  const doc: AccessPolicyDocument = { groups: { leads: ['alice', 'bob'] }, rules: [] };
  assert.deepEqual([...membersOf(doc, ['leads', 'constructor', 'missing'])], ['alice', 'bob']);
});
