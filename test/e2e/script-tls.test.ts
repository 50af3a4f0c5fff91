import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type ServerProcess } from '../helpers/server-process.ts';
import { makeCertificates, type CertificateFiles } from '../helpers/tls-cert.ts';

/**
 * Script steps against a server behind TLS whose certificate a private CA issued for a DNS name (localhost), not
 * for the listen address: with KEYHOLD_TLS_CA and KEYHOLD_SCRIPT_ADDR the script reads a secret through the SDK;
 * told the wrong CA, or left at the listen address the certificate does not name, the run fails with the SDK's
 * UNREACHABLE and the TLS reason (never a 500), and the server warns of the second at start-up.
 */
const VALUE = 'tls-e2e-value-6Rq2mZ8wK1';
const READS_SECRET = "export default async function (input, { secrets }) { return { length: (await secrets.get('TLS_API_KEY')).length }; }";

let dir: string;
let files: CertificateFiles;
const servers: ServerProcess[] = [];

/** A port free now on loopback, so a server can be started with an address naming it. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer().once('error', reject).listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/** JSON over HTTPS to `localhost` (the name the certificate holds), trusting only the test CA. */
async function call(port: number, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const ca = await readFile(files.ca);
  const server = servers.find((s) => s.address.endsWith(`:${port}`))!;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`https://localhost:${port}${path}`, {
      method, ca, timeout: 15_000,
      headers: { authorization: `Bearer ${server.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** A server on a port of its own, with a secret, a machine identity that may use it, and an automation reading it. */
async function serverWith(env: (port: number) => Record<string, string>): Promise<{ port: number; server: ServerProcess }> {
  const port = await freePort();
  const server = await startServer({
    dataDir: join(dir, `data-${port}`),
    env: { KEYHOLD_TLS_CERT: files.cert, KEYHOLD_TLS_KEY: files.key, KEYHOLD_PORT: String(port), ...env(port) },
  });
  servers.push(server);
  const ok = async (method: string, path: string, body: unknown) => {
    const r = await call(port, method, path, body);
    assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json;
  };
  await ok('POST', '/v1/secrets', { name: 'TLS_API_KEY', owner: 'platform-team', classification: 'restricted' });
  await ok('PUT', '/v1/secrets/TLS_API_KEY/values/production', { value: VALUE });
  const machine = await ok('POST', '/v1/machines', { name: 'tls-runner', kind: 'client_secret' });
  await ok('POST', '/v1/grants', { principalType: 'machine', principalId: machine.id, role: 'builder', environments: ['production'] });
  await ok('POST', '/v1/automations', {
    name: 'read-over-tls', runAs: 'tls-runner', environments: ['production'], trigger: { type: 'manual' },
    steps: [{ id: 'read', type: 'script', source: READS_SECRET }],
  });
  return { port, server };
}

const run = ({ port }: Started) => call(port, 'POST', '/v1/automations/read-over-tls/runs', { environment: 'production', input: {} });

type Started = Awaited<ReturnType<typeof serverWith>>;
let good: Started;
let wrongCa: Started;
let listenAddress: Started;
describe('script steps over TLS end to end', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'keyhold-script-tls-'));
    files = await makeCertificates(dir, 'keyhold', 'DNS:localhost');
    const other = await makeCertificates(dir, 'other', 'DNS:localhost');
    [good, wrongCa, listenAddress] = await Promise.all([
      serverWith((port) => ({ KEYHOLD_TLS_CA: files.ca, KEYHOLD_SCRIPT_ADDR: `https://localhost:${port}` })),
      serverWith((port) => ({ KEYHOLD_TLS_CA: other.ca, KEYHOLD_SCRIPT_ADDR: `https://localhost:${port}` })),
      serverWith(() => ({ KEYHOLD_TLS_CA: files.ca })),
    ]);
  });
  after(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('a script step reads a secret through the SDK over TLS, trusting KEYHOLD_TLS_CA at KEYHOLD_SCRIPT_ADDR', async () => {
    const r = await run(good);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.status, 'succeeded', JSON.stringify(r.json));
    assert.deepEqual(r.json.steps[0].output, { length: VALUE.length });
    assert.doesNotMatch(good.server.logs(), /does not name the listen address/, 'no warning: scripts use an address the certificate names');
  });

  test('told a CA that did not issue the certificate, the run fails as the script could not reach the server, not with a 500', async () => {
    const r = await run(wrongCa);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.status, 'failed');
    assert.match(r.json.steps[0].error, /^SCRIPT_FAILED: .*cannot reach Keyhold at https:\/\/localhost:\d+ \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/);
  });

  test('left at a listen address the certificate does not name, the server warns at start-up and script steps fail the name check', async () => {
    assert.match(listenAddress.server.logs(), /the TLS certificate does not name the listen address.*KEYHOLD_SCRIPT_ADDR/);
    const r = await run(listenAddress);
    assert.equal(r.json.status, 'failed', JSON.stringify(r.json));
    assert.match(r.json.steps[0].error, /^SCRIPT_FAILED: .*cannot reach Keyhold at https:\/\/127\.0\.0\.1:\d+ \(ERR_TLS_CERT_ALTNAME_INVALID\)/);
  });
});
