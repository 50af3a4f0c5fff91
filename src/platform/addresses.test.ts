import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isForbiddenAddress, isForbiddenHost, isLoopbackHost } from './addresses.ts';

test('every link-local address is forbidden, not only the metadata one; private and public networks are not', () => {
  for (const [address, forbidden] of [
    ['169.254.169.254', true], ['169.254.0.1', true], ['169.254.170.2', true], ['169.254.255.255', true], // ECS task metadata is 169.254.170.2
    ['fe80::1', true], ['febf::1', true], ['fe80::1%eth0', true], ['::ffff:169.254.10.20', true], ['::ffff:a9fe:a9fe', true],
    ['::ffff:168.63.129.16%eth0', true], ['64:ff9b::a9fe:a9fe', true], ['0.0.0.0', true], ['::', true],
    ['169.253.255.255', false], ['169.255.0.1', false], ['10.0.0.1', false], ['192.168.1.1', false], ['203.0.113.7', false],
    ['fec0::1', false], ['2001:db8::1', false], ['::ffff:10.0.0.1', false], ['127.0.0.1', false],
  ] as const) {
    assert.equal(isForbiddenAddress(address), forbidden, address);
  }
});

test('a metadata name is forbidden however it is spelled in a URL host: case, a trailing dot, an IPv6 literal in brackets', () => {
  for (const host of ['metadata.google.internal', 'METADATA.google.internal.', 'instance-data', '[fe80::1]', '[::ffff:169.254.169.254]']) {
    assert.equal(isForbiddenHost(host), true, host);
  }
  assert.equal(isForbiddenHost('metadata.example.com'), false);
});

test('loopback is decided by address, never by how the name starts', () => {
  for (const [host, loopback] of [['127.0.0.1', true], ['127.8.9.10', true], ['[::1]', true], ['localhost', true], ['127.evil.example', false], ['128.0.0.1', false], ['[::2]', false]] as const) {
    assert.equal(isLoopbackHost(host), loopback, host);
  }
});
