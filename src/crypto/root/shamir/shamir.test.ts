import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toKeyObject } from '../../aead.ts';
import { randomKey } from '../../bytes.ts';
import { makeRootCheck, verifyRootCheck } from '../root-key.ts';
import { combineShares, parseShare, splitRootKey } from './index.ts';

test('any threshold of shares reconstructs the root key, and the check value confirms it', async () => {
  const root = randomKey();
  const check = makeRootCheck(toKeyObject(root));
  const shares = await splitRootKey(root, 5, 3);
  assert.equal(shares.length, 5);
  for (const pick of [[0, 1, 2], [2, 3, 4], [0, 2, 4], [4, 1, 3]]) {
    const key = await combineShares(pick.map((i) => parseShare(shares[i]!)));
    assert.deepEqual(key, root);
    assert.equal(verifyRootCheck(toKeyObject(key), check), true);
  }
});

test('a tampered share yields a wrong key that the check value rejects (the library itself does not notice)', async () => {
  const root = randomKey();
  const check = makeRootCheck(toKeyObject(root));
  const shares = (await splitRootKey(root, 5, 3)).map(parseShare);
  const tampered = Buffer.from(shares[1]!);
  tampered[5]! ^= 0x01;
  const key = await combineShares([shares[0]!, tampered, shares[2]!]);
  assert.notDeepEqual(key, root);
  assert.equal(verifyRootCheck(toKeyObject(key), check), false);
});

test('fewer shares than the threshold do not reconstruct the key', async () => {
  const root = randomKey();
  const shares = (await splitRootKey(root, 5, 3)).map(parseShare);
  const key = await combineShares([shares[0]!, shares[1]!]);
  assert.notDeepEqual(key, root);
});

test('malformed shares are rejected before reconstruction', () => {
  for (const bad of ['', 'hello', 'khs1.', 'khs1.AAAA', 'khs2.' + 'A'.repeat(44)]) {
    assert.throws(() => parseShare(bad), { code: 'INVALID_SHARE' });
  }
});

test('one share of one (threshold 1) is the whole key: it reconstructs it alone, and a tampered one fails the check', async () => {
  const root = randomKey();
  const check = makeRootCheck(toKeyObject(root));
  const [share] = await splitRootKey(root, 1, 1);
  const key = await combineShares([parseShare(share!)]);
  assert.deepEqual(key, root);
  const tampered = parseShare(share!);
  tampered[0]! ^= 0x01;
  assert.equal(verifyRootCheck(toKeyObject(await combineShares([tampered])), check), false);
});
