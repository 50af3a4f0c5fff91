import { test } from 'node:test';
import assert from 'node:assert/strict';
import { basicClientCredentials, usesBasicScheme, withBasicCredentials } from './client-basic-auth.ts';

const SECRET = 'khcs_basic-canary-0123456789';
const basic = (text: string | Buffer) => `Basic ${Buffer.from(text).toString('base64')}`;

test('a Basic header yields the urlencoded client id and secret, decoded', () => {
  assert.deepEqual(basicClientCredentials(basic(`khc_a:${SECRET}`)), { clientId: 'khc_a', clientSecret: SECRET });
  assert.deepEqual(basicClientCredentials(basic('id%3Awith%3Acolons:s%C3%A9cret+x:y')), { clientId: 'id:with:colons', clientSecret: 'sécret x:y' });
  assert.deepEqual(basicClientCredentials(basic('khc_a:')), { clientId: 'khc_a', clientSecret: '' }, 'an empty secret is a wrong secret, refused later');
  assert.deepEqual(basicClientCredentials(`bAsIc   ${Buffer.from('khc_a:s').toString('base64')}`), { clientId: 'khc_a', clientSecret: 's' });
});

test('no header or another scheme is not Basic and is left alone, as the token endpoint always did', () => {
  for (const header of [undefined, '', 'Bearer kh_x', 'Basically', 'Digest username="a"']) {
    assert.equal(basicClientCredentials(header), null, String(header));
    assert.equal(usesBasicScheme(header), false, String(header));
  }
});

test('a malformed Basic header is refused without quoting any of it', () => {
  const headers = [
    'Basic', 'Basic ', `Basic ${SECRET}!`, `Basic ${Buffer.from(`khc_a:${SECRET}`).toString('base64url')}`,
    `Basic ${Buffer.from(`khc_a:${SECRET}`).toString('base64').replace(/=+$/, '')}x`,
    basic(`khc_a${SECRET}`), basic(Buffer.concat([Buffer.from(`khc_a:${SECRET}`), Buffer.from([0xff])])),
    basic(`khc_a:${SECRET}%zz`), basic(`khc_%e9:${SECRET}`), basic(`:${SECRET}`), basic(`${'k'.repeat(129)}:${SECRET}`),
    basic(`khc_a:${SECRET}${'s'.repeat(256)}`), `Basic ${Buffer.from(`khc_a:${SECRET}`).toString('base64')} extra`,
  ];
  for (const header of headers) {
    assert.throws(() => basicClientCredentials(header), (err: { code?: string; message: string }) => {
      assert.equal(err.code, 'MALFORMED_BASIC_AUTH', header);
      const quoted = header.slice(6).trim().slice(0, 12);
      assert.ok(!err.message.includes(SECRET) && (quoted === '' || !err.message.includes(quoted)), err.message);
      return true;
    });
  }
});

test('Basic credentials fill the body; a secret in both places or two different client ids is refused', () => {
  const creds = { clientId: 'khc_a', clientSecret: SECRET };
  assert.deepEqual(withBasicCredentials({ grant_type: 'client_credentials' }, creds), { grant_type: 'client_credentials', client_id: 'khc_a', client_secret: SECRET });
  assert.deepEqual(withBasicCredentials({ grant_type: 'client_credentials', client_id: 'khc_a' }, creds), { grant_type: 'client_credentials', client_id: 'khc_a', client_secret: SECRET });
  for (const body of [{ client_secret: SECRET }, { client_secret: 'other' }, { client_secret: undefined }, { client_id: 'khc_b' }, { client_id: 'KHC_A' }]) {
    assert.throws(() => withBasicCredentials(body, creds), (err: { code?: string; message: string }) => {
      assert.equal(err.code, 'MULTIPLE_CLIENT_AUTH', JSON.stringify(body));
      assert.ok(!err.message.includes(SECRET));
      return true;
    });
  }
  for (const body of [undefined, null, 'text', ['a']]) assert.equal(withBasicCredentials(body, creds), body, 'left for the schema to refuse');
});
