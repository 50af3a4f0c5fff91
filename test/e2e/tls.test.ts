import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { request as httpsRequest } from 'node:https';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startServer, type ServerProcess } from '../helpers/server-process.ts';

/**
 * The server behind TLS (KEYHOLD_TLS_CERT/KEY): a client that trusts the certificate talks to it,
 * the CLI included; plain HTTP on the same port gets no answer; an untrusted certificate is refused
 * by the client. The certificate is made for this run (openssl, an ECDSA P-256 key for 127.0.0.1).
 */
const run = promisify(execFile);
const REPO = join(import.meta.dirname, '..', '..');
let dir: string;
let server: ServerProcess | undefined;
describe('TLS end to end', () => {
  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function get(url: string, ca?: Buffer): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(url, { ...(ca ? { ca } : {}), timeout: 5000 }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString('utf8')));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });
  }

  test('with a certificate the server speaks only TLS, and the CLI reaches it when told to trust the certificate', { timeout: 60_000 }, async () => {
    dir = await mkdtemp(join(tmpdir(), 'keyhold-tls-'));
    const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
      '-subj', '/CN=keyhold-test', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert]);
    server = await startServer({ dataDir: join(dir, 'data'), env: { KEYHOLD_TLS_CERT: cert, KEYHOLD_TLS_KEY: key } });
    assert.match(server.address, /^https:\/\/127\.0\.0\.1:\d+$/);
    const ca = await readFile(cert);

    const status = await get(`${server.address}/v1/sys/status`, ca);
    assert.equal(status.status, 200);
    assert.equal(JSON.parse(status.body).sealed, false);
    await assert.rejects(get(`${server.address}/v1/sys/status`), /self-signed|unable to verify|certificate/i, 'an untrusted certificate is refused by the client');

    const plain = await fetch(server.address.replace('https:', 'http:') + '/v1/sys/status').then((r) => r.status, (e: Error) => e.message);
    assert.notEqual(plain, 200, 'plain HTTP gets no answer from the TLS port');

    const cli = await run(join(REPO, 'bin', 'keyhold'), ['status', '--json'], {
      env: { PATH: process.env.PATH, KEYHOLD_ADDR: server.address, NODE_EXTRA_CA_CERTS: cert },
    });
    assert.equal(JSON.parse(cli.stdout).sealed, false);
    assert.doesNotMatch(server.logs(), /serving plain HTTP/, 'no plain-HTTP warning when TLS is on');
  });

  test('a certificate file that cannot be read stops start-up naming the setting, not with a raw ENOENT', { timeout: 60_000 }, async () => {
    const data = await mkdtemp(join(tmpdir(), 'keyhold-tls-missing-'));
    try {
      const node = join(REPO, 'node_modules', '.bin', 'node');
      const failed = await run(node, ['--disable-warning=ExperimentalWarning', join(REPO, 'src', 'main', 'server.ts')], {
        env: { PATH: process.env.PATH, KEYHOLD_DATA_DIR: data, KEYHOLD_TLS_CERT: join(data, 'missing-cert.pem'), KEYHOLD_TLS_KEY: join(data, 'missing-key.pem') },
      }).then(() => null, (err: { code: number; stderr: string }) => err);
      assert.ok(failed, 'the server must not start');
      assert.equal(failed.code, 2);
      assert.match(failed.stderr, /invalid configuration: KEYHOLD_TLS_CERT names .*missing-cert\.pem, which cannot be read \(ENOENT\)/);
    } finally {
      await rm(data, { recursive: true, force: true });
    }
  });
});
