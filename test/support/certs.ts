// Certificates made at test time with the openssl CLI: a CA, leaves it signs or self-signed ones, expired ones,
// encrypted keys and damaged PEM text.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Ca {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: string;
  readonly key: string;
}

export interface MadeCertificate {
  /** The leaf, followed by the CA's certificate when a CA signed it. */
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: string;
  readonly key: string;
  /** With a CA: the CA's certificate alone, the chain a client trusts. */
  readonly chainFile?: string;
}

export interface CertificateOptions {
  /** DNS names for subjectAltName, wildcards allowed; the first is the common name too. */
  readonly names: readonly string[];
  /** Signs the leaf; without it the leaf signs itself. */
  readonly ca?: Ca;
  readonly days?: number;
  /** ECDSA P-256 (the default, fast) or RSA; `rsa-512` is too weak for OpenSSL's security level. */
  readonly key?: 'ec' | 'rsa' | 'rsa-512';
  /** Base name of the files written: `<fileName>.crt` and `<fileName>.key`. */
  readonly fileName?: string;
  /** A leaf whose notAfter is already past. */
  readonly notAfterPast?: boolean;
  /** Only a common name, no subjectAltName. */
  readonly commonNameOnly?: boolean;
}

const openssl = (...args: string[]): void => {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
};

function makeKey(file: string, kind: 'ec' | 'rsa' | 'rsa-512' = 'ec'): void {
  if (kind === 'ec') openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file);
  else openssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', `rsa_keygen_bits:${kind === 'rsa' ? 2048 : 512}`, '-out', file);
}

export function makeCa(dir: string, name = 'Meridian Test CA'): Ca {
  const keyFile = join(dir, 'ca.key');
  const certFile = join(dir, 'ca.crt');
  makeKey(keyFile);
  openssl('req', '-x509', '-new', '-key', keyFile, '-subj', `/CN=${name}`, '-days', '30', '-out', certFile);
  return { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
}

export function makeCertificate(dir: string, options: CertificateOptions): MadeCertificate {
  const base = join(dir, options.fileName ?? `leaf-${randomBytes(4).toString('hex')}`);
  const keyFile = `${base}.key`;
  const certFile = `${base}.crt`;
  makeKey(keyFile, options.key);
  // `x509 -req` takes -days down to -1 (a notAfter a day before now); `req -x509` takes none below 1.
  const extFile = `${base}.ext`;
  writeFileSync(extFile, options.commonNameOnly ? 'basicConstraints=CA:FALSE\n' : `subjectAltName=${options.names.map((name) => `DNS:${name}`).join(',')}\n`);
  const csrFile = `${base}.csr`;
  openssl('req', '-new', '-key', keyFile, '-subj', `/CN=${options.names[0]}`, '-out', csrFile);
  const days = options.notAfterPast ? '-1' : String(options.days ?? 30);
  const signer = options.ca ? ['-CA', options.ca.certFile, '-CAkey', options.ca.keyFile] : ['-signkey', keyFile];
  const serial = `0x${randomBytes(8).toString('hex')}`;
  openssl('x509', '-req', '-in', csrFile, ...signer, '-set_serial', serial, '-days', days, '-extfile', extFile, '-out', certFile);
  if (options.ca) writeFileSync(certFile, readFileSync(certFile, 'utf8') + options.ca.cert);
  return {
    certFile,
    keyFile,
    cert: readFileSync(certFile, 'utf8'),
    key: readFileSync(keyFile, 'utf8'),
    ...(options.ca ? { chainFile: options.ca.certFile } : {}),
  };
}

/** The key in `keyFile` as encrypted PKCS#8 PEM (`ENCRYPTED PRIVATE KEY`), passphrase `secret`. */
export function encryptedKey(keyFile: string): string {
  return execFileSync('openssl', ['pkey', '-in', keyFile, '-aes256', '-passout', 'pass:secret'], { encoding: 'utf8' });
}

/** PEM text whose armour is intact but whose base64 body no longer decodes to valid DER. */
export function corruptPem(text: string): string {
  return text.replace(/(-----BEGIN [A-Z ]+-----\n)([A-Za-z0-9+/]{16})/, (_match, head: string) => `${head}${'A'.repeat(16)}`);
}
