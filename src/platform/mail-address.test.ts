import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMailAddress } from './mail-address.ts';

test('a mail address the channel can send is plain ASCII within SMTP\'s lengths', () => {
  for (const ok of ['ops@example.com', 'o.p+s@xn--bcher-kva.example', `${'a'.repeat(64)}@example.com`, `a@${'b'.repeat(240)}.example`]) {
    assert.equal(isMailAddress(ok), ok.length <= 254, ok.slice(0, 30));
  }
  for (const bad of [
    'zoë@example.com', 'ops@exämple.com', 'ops@example.com\u200b', // raw UTF-8 needs SMTPUTF8, which relays may not offer
    `${'a'.repeat(65)}@example.com`, // local part over 64 octets (RFC 5321 §4.5.3.1.1)
    `a@${'b'.repeat(260)}.example`, // path over 254
    'Ops <ops@example.com>', 'ops@@example.com', 'ops', 'ops@', '@example.com', 'a b@example.com', 'ops@example.com\r\nRCPT TO:<x@y>',
  ]) assert.equal(isMailAddress(bad), false, JSON.stringify(bad.slice(0, 40)));
});
