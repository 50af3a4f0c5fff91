import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1'];

/** Paths of PEM files made for a test run. */
export interface CertificateFiles {
  /** The private CA's certificate. */
  ca: string;
  /** The server certificate the CA issued. */
  cert: string;
  key: string;
}

/**
 * A private CA (named `name`-ca) and a server certificate it issued for `subjectAltName` (e.g. "DNS:localhost" or
 * "IP:127.0.0.1"), made with openssl in `dir` (ECDSA P-256, valid a day).
 */
export async function makeCertificates(dir: string, name: string, subjectAltName: string): Promise<CertificateFiles> {
  const files = { ca: join(dir, `${name}-ca.pem`), cert: join(dir, `${name}-cert.pem`), key: join(dir, `${name}-key.pem`) };
  const caKey = join(dir, `${name}-ca-key.pem`);
  await run('openssl', ['req', '-x509', ...EC_KEY, '-subj', `/CN=${name}-ca`, '-keyout', caKey, '-out', files.ca]);
  await run('openssl', ['req', '-x509', ...EC_KEY, '-subj', `/CN=${name}`, '-addext', `subjectAltName=${subjectAltName}`,
    '-addext', 'basicConstraints=critical,CA:FALSE', '-CA', files.ca, '-CAkey', caKey, '-keyout', files.key, '-out', files.cert]);
  return files;
}
