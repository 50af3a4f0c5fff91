import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressBlock, isForbiddenAddress } from './addresses.ts';

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

test('a metadata or link-local address is forbidden however an IPv6 literal carries or spells it', () => {
  const forbidden = [
    '169.254.169.254', '100.100.100.200', '0.0.0.0', '::', '0:0:0:0:0:0:0:0', 'fe80::1', 'FEBF::1', 'fe80::1%eth0', '[fe80::1]',
    '::ffff:169.254.169.254', '::ffff:a9fe:a9fe', '0:0:0:0:0:ffff:a9fe:a9fe', '0:0:0:0:0:FFFF:169.254.169.254',
    '::169.254.169.254', '64:ff9b::169.254.169.254', '64:ff9b::a9fe:a9fe', '64:ff9b:0:0:0:0:a9fe:a9fe',
    'fd00:ec2::254', 'fd00:ec2:0:0:0:0:0:254', 'FD00:0EC2::0254',
    // Azure's WireServer (VM agent configuration, certificates), in each spelling.
    '168.63.129.16', '::ffff:168.63.129.16', '64:ff9b::a83f:8110',
    // IPv4-translated (::ffff:0:0:0/96) and the local-use NAT64 prefix (64:ff9b:1::/48) carry IPv4 too.
    '::ffff:0:169.254.169.254', '::ffff:0:a9fe:a9fe', '64:ff9b:1::169.254.169.254', '64:ff9b:1:0:0:0:a9fe:a9fe',
    // ...at a /48 or /64 local-use prefix's position (RFC 6052: the u octet, bits 64-71, skipped).
    '64:ff9b:1:a9fe:a9:fe00::', '64:ff9b:1:0:a9:fea9:fe00:0',
  ];
  for (const address of forbidden) assert.equal(isForbiddenAddress(address), true, address);
  const allowed = ['203.0.113.7', '10.0.0.1', '::1', '::2', '127.0.0.1', '2001:db8::1', '::ffff:203.0.113.7', '64:ff9b::203.0.113.7', 'fd00:ec2::253', 'fec0::1',
    '168.63.129.17', '::ffff:0:203.0.113.7', '64:ff9b:1::203.0.113.7', '64:ff9b:2::169.254.169.254'];
  for (const address of allowed) assert.equal(isForbiddenAddress(address), false, address);
});
