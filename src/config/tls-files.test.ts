import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { promisify } from 'node:util';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCertificates, type CertificateFiles } from '../../test/helpers/tls-cert.ts';
import { ConfigError } from './parse.ts';
import { certificateNames, readTlsFiles } from './tls-files.ts';

/** The TLS files read at start-up: what script steps are given to trust, and every unreadable file named by its setting. */

let dir: string;
let files: CertificateFiles;
describe('TLS files', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'keyhold-tls-files-'));
    files = await makeCertificates(dir, 'server', 'DNS:keyhold.internal');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const fingerprints = (pem: string) => (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map((b) => new X509Certificate(b).fingerprint256);
  const refused = (tls: { certFile: string; keyFile: string; caFile: string | null }, message: RegExp) =>
    assert.throws(() => readTlsFiles(tls), (err: unknown) => err instanceof ConfigError && message.test((err as Error).message));

  test('script steps trust KEYHOLD_TLS_CA when given, and the certificate itself otherwise', async () => {
    const withCa = readTlsFiles({ certFile: files.cert, keyFile: files.key, caFile: files.ca });
    assert.deepEqual(withCa.https, { cert: await readFile(files.cert), key: await readFile(files.key) });
    assert.deepEqual(fingerprints(withCa.scriptCa), [new X509Certificate(await readFile(files.ca)).fingerprint256]);
    const selfSigned = readTlsFiles({ certFile: files.cert, keyFile: files.key, caFile: null });
    assert.deepEqual(fingerprints(selfSigned.scriptCa), [new X509Certificate(await readFile(files.cert)).fingerprint256]);
  });

  test('a CA bundle keeps every certificate, and a private key kept in the same file is never handed to scripts', async () => {
    const bundle = join(dir, 'bundle.pem');
    await writeFile(bundle, [await readFile(files.key, 'utf8'), await readFile(files.ca, 'utf8'), 'comment\n', await readFile(files.cert, 'utf8')].join(''));
    const { scriptCa } = readTlsFiles({ certFile: files.cert, keyFile: files.key, caFile: bundle });
    assert.equal(fingerprints(scriptCa).length, 2);
    assert.doesNotMatch(scriptCa, /PRIVATE KEY/);
  });

  test('a CA file that cannot be read, holds no certificate or a broken one stops start-up naming KEYHOLD_TLS_CA', async () => {
    refused({ certFile: files.cert, keyFile: files.key, caFile: join(dir, 'missing.pem') }, /KEYHOLD_TLS_CA names .*missing\.pem, which cannot be read \(ENOENT\)/);
    refused({ certFile: files.cert, keyFile: files.key, caFile: files.key }, /KEYHOLD_TLS_CA names .*server-key\.pem, which holds no PEM certificate/);
    const broken = join(dir, 'broken.pem');
    await writeFile(broken, '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');
    refused({ certFile: files.cert, keyFile: files.key, caFile: broken }, /KEYHOLD_TLS_CA names .*broken\.pem, whose certificate 1 cannot be parsed/);
    refused({ certFile: files.key, keyFile: files.key, caFile: null }, /KEYHOLD_TLS_CERT names .*server-key\.pem, which holds no PEM certificate/);
    refused({ certFile: files.cert, keyFile: join(dir, 'nokey.pem'), caFile: files.ca }, /KEYHOLD_TLS_KEY names .*nokey\.pem, which cannot be read/);
  });

  test('whether the server certificate (the first of KEYHOLD_TLS_CERT) names an address\'s host, as a client checking the name would', async () => {
    const chainFile = join(dir, 'chain.pem');
    await writeFile(chainFile, (await readFile(files.cert, 'utf8')) + (await readFile(files.ca, 'utf8')));
    const { certificate } = readTlsFiles({ certFile: chainFile, keyFile: files.key, caFile: files.ca });
    assert.equal(certificate.subject, 'CN=server');
    assert.equal(certificateNames(certificate, 'https://keyhold.internal:8200'), true);
    assert.equal(certificateNames(certificate, 'https://127.0.0.1:8200'), false);
    const ip = await makeCertificates(dir, 'ip', 'IP:127.0.0.1,IP:::1');
    const ipCert = new X509Certificate(await readFile(ip.cert));
    assert.equal(certificateNames(ipCert, 'https://127.0.0.1:8200'), true);
    assert.equal(certificateNames(ipCert, 'https://[::1]:8200'), true);
    assert.equal(certificateNames(ipCert, 'https://localhost:8200'), false);
  });

  test('a key file that holds no usable key, an encrypted one, or the key of another certificate stops start-up naming KEYHOLD_TLS_KEY', async () => {
    refused({ certFile: files.cert, keyFile: files.cert, caFile: null }, /KEYHOLD_TLS_KEY names .*server-cert\.pem, which holds no private key that can be read/);
    const encrypted = join(dir, 'encrypted-key.pem');
    await promisify(execFile)('openssl', ['pkey', '-in', files.key, '-aes256', '-passout', 'pass:not-read', '-out', encrypted]);
    refused({ certFile: files.cert, keyFile: encrypted, caFile: null }, /KEYHOLD_TLS_KEY names .*encrypted-key\.pem, which holds an encrypted key: .*decrypt it/);
    const other = await makeCertificates(dir, 'other', 'DNS:other.internal');
    refused({ certFile: files.cert, keyFile: other.key, caFile: null }, /KEYHOLD_TLS_KEY names .*other-key\.pem, whose key is not the one of the certificate in KEYHOLD_TLS_CERT/);
  });
});
