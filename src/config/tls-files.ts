import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { ConfigError } from './parse.ts';
import type { Config } from './config.ts';

/** The server's TLS material, read once at start-up. */
export interface TlsFiles {
  /** For the HTTPS listener. */
  https: { cert: Buffer; key: Buffer };
  /** The server's certificate: the first in KEYHOLD_TLS_CERT (those after it are its chain). */
  certificate: X509Certificate;
  /** What script steps trust besides Node's bundled CAs: the certificates of KEYHOLD_TLS_CA (or of KEYHOLD_TLS_CERT), PEM. */
  scriptCa: string;
}

/** A file a setting names, or a ConfigError naming the setting (a raw ENOENT names neither). */
function readSetting(setting: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError(setting, `names ${file}, which cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/**
 * Only the certificates of a PEM file, each parsed and written out again: a file that holds none, or one that does
 * not parse, stops start-up (Node would only warn in each script and trust nothing), and a private key kept in the
 * same file never reaches a script's directory.
 */
function certificatesOf(setting: string, file: string, pem: Buffer): X509Certificate[] {
  const blocks = pem.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new ConfigError(setting, `names ${file}, which holds no PEM certificate`);
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch {
      throw new ConfigError(setting, `names ${file}, whose certificate ${i + 1} cannot be parsed`);
    }
  });
}

/**
 * The private key of a key file that the server certificate was issued for. Checked here so a wrong file stops
 * start-up naming its setting, not with an OpenSSL code ("key values mismatch", "DECODER routines::unsupported").
 */
function privateKeyFor(file: string, pem: Buffer, certificate: X509Certificate): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    // PKCS#8 or the older OpenSSL form; OpenSSL says only "interrupted or cancelled" (it asked for no passphrase).
    if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(pem.toString('latin1'))) {
      throw new ConfigError('KEYHOLD_TLS_KEY', `names ${file}, which holds an encrypted key: Keyhold reads no passphrase; decrypt it (openssl pkey) into a file only the server's user can read`);
    }
    throw new ConfigError('KEYHOLD_TLS_KEY', `names ${file}, which holds no private key that can be read (PEM or DER, unencrypted)`);
  }
  if (!certificate.checkPrivateKey(key)) {
    throw new ConfigError('KEYHOLD_TLS_KEY', `names ${file}, whose key is not the one of the certificate in KEYHOLD_TLS_CERT (the first one, ${certificate.subject.replace(/\n/g, ', ')})`);
  }
  return key;
}

const pemOf = (certificates: X509Certificate[]) => certificates.map((c) => c.toString()).join('');

/** Reads the certificate, key and CA files the TLS settings name; any unreadable one stops start-up naming its setting. */
export function readTlsFiles(tls: NonNullable<Config['tls']>): TlsFiles {
  const cert = readSetting('KEYHOLD_TLS_CERT', tls.certFile);
  const key = readSetting('KEYHOLD_TLS_KEY', tls.keyFile);
  const chain = certificatesOf('KEYHOLD_TLS_CERT', tls.certFile, cert);
  privateKeyFor(tls.keyFile, key, chain[0]!);
  const scriptCa = tls.caFile === null ? chain : certificatesOf('KEYHOLD_TLS_CA', tls.caFile, readSetting('KEYHOLD_TLS_CA', tls.caFile));
  return { https: { cert, key }, certificate: chain[0]!, scriptCa: pemOf(scriptCa) };
}

/** Whether a certificate names the host of `address`, so a client checking the name accepts it. */
export function certificateNames(leaf: X509Certificate, address: string): boolean {
  const host = new URL(address).hostname.replace(/^\[|\]$/g, '');
  return (isIP(host) ? leaf.checkIP(host) : leaf.checkHost(host)) !== undefined;
}
