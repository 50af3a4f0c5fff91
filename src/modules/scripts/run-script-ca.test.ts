import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCertificates } from '../../../test/helpers/tls-cert.ts';
import { createRedactor } from '../redaction/redactor.ts';
import { runScript } from './run-script.ts';

/** A script reaching a server whose certificate a private CA issued: it trusts that CA when given it, and only then. */

let dir: string;
let server: Server;
let addr: string;
let ca: string;
let otherCa: string;
describe('script steps and a private CA', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'keyhold-script-ca-'));
    const files = await makeCertificates(dir, 'server', 'IP:127.0.0.1');
    ca = await readFile(files.ca, 'utf8');
    otherCa = await readFile((await makeCertificates(dir, 'other', 'IP:127.0.0.1')).ca, 'utf8');
    server = createServer({ cert: await readFile(files.cert), key: await readFile(files.key) }, (_req, res) => res.end('{"hello":"tls"}'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    addr = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  const fetchesServer = (extraCa?: string) => runScript({
    source: 'export default async function () { return (await fetch(process.env.KEYHOLD_ADDR)).json(); }',
    input: null, env: { KEYHOLD_ADDR: addr, KEYHOLD_TOKEN: 'kh_ca-test-token', KEYHOLD_ENVIRONMENT: 'production' },
    timeoutMs: 10_000, maxOutputBytes: 64 * 1024, redactor: createRedactor([]), ...(extraCa ? { extraCa } : {}),
  });

  test('given the CA that issued the server certificate, the script reaches the server over TLS without any file permission for it', async () => {
    const r = await fetchesServer(ca);
    assert.equal(r.ok, true, `${r.error}\n${r.stderr}`);
    assert.deepEqual(r.output, { hello: 'tls' });
    assert.doesNotMatch(r.stderr, /Ignoring extra certs/, 'Node loaded the CA file');
  });

  test('without it, or with another CA, the certificate is refused', async () => {
    for (const extraCa of [undefined, otherCa]) {
      const r = await fetchesServer(extraCa);
      assert.equal(r.ok, false, JSON.stringify(r.output));
      assert.match(`${r.error} ${r.stderr}`, /fetch failed|certificate|UNABLE_TO_VERIFY/i);
    }
  });
});
