import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressBlock } from './addresses.ts';

test('a rate limit counts an IPv4 address alone and an IPv6 address by its /64, however it is spelled', () => {
  const cases: Array<[string, string]> = [
    ['192.0.2.7', '192.0.2.7'],
    ['::ffff:192.0.2.7', '192.0.2.7'],
    ['::FFFF:c000:207', '192.0.2.7'],
    ['2001:db8::7', '2001:db8:0:0::/64'],
    ['2001:0DB8:0000:0000:ffff::1', '2001:db8:0:0::/64'],
    ['2001:db8:1:2:3:4:192.0.2.7', '2001:db8:1:2::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['[2001:db8:a:b::1]', '2001:db8:a:b::/64'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4::/64'],
  ];
  for (const [address, block] of cases) assert.equal(addressBlock(address), block, address);
});
