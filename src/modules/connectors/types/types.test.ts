import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connectorTypes } from './index.ts';

const samples: Array<[keyof typeof connectorTypes, Record<string, unknown>]> = [
  ['http', { baseUrl: 'https://api.example.com/v1/', auth: { kind: 'bearer' } }],
  ['http', { baseUrl: 'http://127.0.0.1:9000', healthPath: '/health', destinations: { uploads: 'https://files.example.com/up' }, auth: { kind: 'hmac' } }],
  ['http', { baseUrl: 'http://127.0.0.1:9000', auth: { kind: 'header', header: 'X-Api-Key' }, timeoutMs: 500 }],
  ['http', { baseUrl: 'http://127.0.0.1:9000', auth: { kind: 'query', param: 'key' } }],
  ['webhook-signer', { url: 'https://hooks.example.com/in/42', signatureHeader: 'Stripe-Signature' }],
  ['postgres', { host: '127.0.0.1', database: 'app', ssl: 'require' }],
];

test('settings are normalised once: parsing stored settings again changes nothing', () => {
  for (const [type, raw] of samples) {
    const once = connectorTypes[type].parseSettings(raw);
    assert.deepEqual(connectorTypes[type].parseSettings(once as Record<string, unknown>), once, `${type} ${JSON.stringify(raw)}`);
  }
});

test('each auth kind names its slots', () => {
  const slots = (auth: Record<string, unknown>) => connectorTypes.http.slots(connectorTypes.http.parseSettings({ baseUrl: 'https://h', auth })).required;
  assert.deepEqual(slots({ kind: 'bearer' }), ['token']);
  assert.deepEqual(slots({ kind: 'basic' }), ['username', 'password']);
  assert.deepEqual(slots({ kind: 'header', header: 'X-Key' }), ['value']);
  assert.deepEqual(slots({ kind: 'query', param: 'k' }), ['value']);
  assert.deepEqual(slots({ kind: 'hmac' }), ['signingKey']);
  assert.deepEqual(connectorTypes.postgres.slots(connectorTypes.postgres.parseSettings({ host: 'db', database: 'app' })), { required: ['user', 'password'], optional: ['adminUser', 'adminPassword'] });
});

test('settings that would smuggle a credential or a reserved header are refused, naming the field', () => {
  const bad: Array<[keyof typeof connectorTypes, Record<string, unknown>, RegExp]> = [
    ['http', { baseUrl: 'https://user:pw@api.example.com', auth: { kind: 'bearer' } }, /baseUrl/],
    ['http', { baseUrl: 'https://api.example.com', auth: { kind: 'header', header: 'Host' } }, /auth\.header/],
    ['http', { baseUrl: 'https://api.example.com', auth: { kind: 'header', header: 'Bad Header' } }, /auth\.header/],
    ['http', { baseUrl: 'https://api.example.com', auth: { kind: 'bearer', header: 'x' } }, /header/],
    ['http', { baseUrl: 'https://api.example.com', auth: { kind: 'none' } }, /auth\.kind/],
    ['http', { baseUrl: 'https://api.example.com', auth: { kind: 'bearer' }, token: 'sk_live_x' }, /settings\.token/],
    ['http', { baseUrl: 'https://api.example.com', healthPath: '//evil', auth: { kind: 'bearer' } }, /healthPath/],
    ['webhook-signer', { url: 'ftp://x' }, /url/],
    ['postgres', { host: 'db/evil', database: 'app' }, /host/],
    ['postgres', { host: 'db', database: 'app', ssl: 'sometimes' }, /ssl/],
  ];
  for (const [type, raw, field] of bad) {
    assert.throws(() => connectorTypes[type].parseSettings(raw), (e: { code?: string; message?: string }) => e.code === 'VALIDATION_FAILED' && field.test(e.message ?? ''), JSON.stringify(raw));
  }
});
