// TLS certificate pairs as plain data: a cert chain and key checked to parse, to match and to make a TLS context,
// and the SNI lookup from a server name to the certificate that covers it. Pure: the control plane reads the files.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { createSecureContext } from 'node:tls';

/** A certificate's files as the config names them. */
export interface CertificateFiles {
  readonly cert: string;
  readonly key: string;
}

/** A pair that passed every check, as data a data-plane thread can build its `tls.SecureContext` from. */
export interface CheckedCertificate {
  /** The first DNS name of the leaf (subjectAltName, else the common name): a metric label and display name. */
  readonly label: string;
  /** Lower-case DNS names the leaf covers, wildcards (`*.example.com`) included; the common name only without SAN DNS names. */
  readonly names: readonly string[];
  /** The leaf's validity, epoch ms. */
  readonly notBefore: number;
  readonly notAfter: number;
  /** The leaf's SHA-256 fingerprint, colon-separated hex. */
  readonly fingerprint: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** The certificate blocks of the cert file, leaf first, then intermediates. */
  readonly cert: string;
  /** The private key block of the key file. */
  readonly key: string;
}

/** A pair that cannot serve, naming the file at fault. */
export class CertificateError extends Error {
  readonly file: string;
  /** What is wrong, without the file name the message starts with. */
  readonly problem: string;
  constructor(file: string, problem: string, cause?: unknown) {
    super(`${file}: ${problem}`, { cause });
    this.name = 'CertificateError';
    this.file = file;
    this.problem = problem;
  }
}

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;
// PKCS#8 (`PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`) and the traditional `RSA`/`EC`/`DSA PRIVATE KEY` forms.
const KEY_BLOCK = /-----BEGIN ((?:[A-Z]+ )*)PRIVATE KEY-----[\s\S]*?-----END \1PRIVATE KEY-----/;

const reason = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/**
 * Checks a pair read from `files` and returns it as data. Throws a CertificateError naming the cert file when it holds
 * no certificate, one that does not parse, or one a TLS context refuses (a weak key, say), and naming the key file
 * when it holds no key, an encrypted one, one that does not parse, or one that does not belong to the leaf.
 * An expired leaf passes: it serves, as it would in nginx or HAProxy, while its expiry is watched elsewhere.
 */
export function checkCertificate(files: CertificateFiles, cert: string, key: string): CheckedCertificate {
  const blocks = cert.match(CERTIFICATE_BLOCK);
  if (blocks === null) throw new CertificateError(files.cert, 'no PEM certificate found');
  const chain = blocks.map((block, index) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      const which = blocks.length === 1 ? 'the certificate' : `certificate ${index + 1} of ${blocks.length} in the chain`;
      throw new CertificateError(files.cert, `${which} does not parse: ${reason(error)}`, error);
    }
  });
  const leaf = chain[0];

  const keyBlock = KEY_BLOCK.exec(key);
  if (keyBlock === null) throw new CertificateError(files.key, 'no PEM private key found');
  // Asking for a passphrase is no option for a server that reloads by itself; a plain key with tight file modes is the norm.
  if (keyBlock[1] === 'ENCRYPTED ' || /^Proc-Type:\s*4,\s*ENCRYPTED/m.test(keyBlock[0])) {
    throw new CertificateError(files.key, 'encrypted private keys are not supported');
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(keyBlock[0]);
  } catch (error) {
    throw new CertificateError(files.key, `the private key does not parse: ${reason(error)}`, error);
  }

  const names = dnsNames(leaf);
  const label = names[0] ?? commonName(leaf) ?? files.cert;
  let matches = false;
  try {
    matches = leaf.checkPrivateKey(privateKey);
  } catch {
    // A key of another algorithm than the certificate's: a mismatch all the same.
  }
  if (!matches) throw new CertificateError(files.key, `the private key does not belong to the certificate for ${label} in ${files.cert}`);

  // Publish only the certificate blocks and the key block, so a combined file never sends its key along as "cert".
  const pem = { cert: `${blocks.join('\n')}\n`, key: `${keyBlock[0]}\n` };
  try {
    // What OpenSSL itself refuses at its security level: an RSA key under 2048 bits, a chain signed with a weak digest.
    createSecureContext(pem);
  } catch (error) {
    throw new CertificateError(files.cert, `TLS refuses the pair: ${reason(error)}`, error);
  }

  return Object.freeze({
    label,
    names: Object.freeze(names),
    notBefore: Date.parse(leaf.validFrom),
    notAfter: Date.parse(leaf.validTo),
    fingerprint: leaf.fingerprint256,
    certFile: files.cert,
    keyFile: files.key,
    cert: pem.cert,
    key: pem.key,
  });
}

/** The subjectAltName DNS entries, lower-case, in order; the common name stands in only when there are none. */
function dnsNames(leaf: X509Certificate): string[] {
  const names: string[] = [];
  // Node quotes an entry that holds a comma or a quote (`DNS:"a, DNS:b"`), so one entry can never pose as two.
  for (const match of (leaf.subjectAltName ?? '').matchAll(/(?:^|, )DNS:("(?:[^"\\]|\\.)*"|[^,]*)/g)) {
    const name = match[1].startsWith('"') ? (JSON.parse(match[1]) as string) : match[1];
    names.push(hostName(name));
  }
  if (names.length > 0) return names;
  const common = commonName(leaf);
  return common === undefined ? [] : [hostName(common)];
}

/** The subject's last CN, the most specific one when there are several. */
function commonName(leaf: X509Certificate): string | undefined {
  const lines = leaf.subject.split('\n').filter((line) => line.startsWith('CN='));
  return lines.length === 0 ? undefined : lines[lines.length - 1].slice(3);
}

const hostName = (name: string): string => (name.endsWith('.') ? name.slice(0, -1) : name).toLowerCase();

/**
 * A lookup from an SNI server name to the value of the first entry whose names cover it: an exact name first
 * (case-insensitive, a trailing dot ignored), then a wildcard `*.example.com` covering exactly one label in its place
 * (`a.example.com`, neither `example.com` nor `a.b.example.com`); `fallback` for every other name, or none sent.
 * Values must not be undefined. A lookup costs one lower-casing and one Map get, plus a suffix and a second get
 * when no exact name matches.
 */
export function sniIndex<T>(entries: readonly { readonly names: readonly string[]; readonly value: T }[], fallback: T): (servername: string) => T {
  const exact = new Map<string, T>();
  // Keyed by what follows the wildcard's label, dot included: `*.example.com` → `.example.com`.
  const wildcard = new Map<string, T>();
  // Each name goes in with and without a trailing dot, so a lookup never has to cut one off.
  const add = (map: Map<string, T>, key: string, value: T): void => {
    if (!map.has(key)) map.set(key, value);
    if (!map.has(`${key}.`)) map.set(`${key}.`, value);
  };
  for (const { names, value } of entries) {
    for (const name of names) {
      const host = hostName(name);
      if (host.startsWith('*.')) add(wildcard, host.slice(1), value);
      else if (host !== '') add(exact, host, value);
    }
  }
  return (servername) => {
    // Clients send lower case nearly always, and then V8 hands back the same string.
    const name = servername.toLowerCase();
    const found = exact.get(name);
    if (found !== undefined) return found;
    const dot = name.indexOf('.');
    // No label for the wildcard to stand in for (`.example.com`), or no dot at all.
    if (dot <= 0 || wildcard.size === 0) return fallback;
    const covered = wildcard.get(name.slice(dot));
    return covered === undefined ? fallback : covered;
  };
}
