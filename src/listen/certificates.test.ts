// checkCertificate on real openssl-made pairs (chains, self-signed, expired, broken, mismatched, encrypted, weak),
// and sniIndex's matching rules.
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateError, checkCertificate, sniIndex } from './certificates.ts';
import type { CertificateFiles } from './certificates.ts';
import { corruptPem, encryptedKey, makeCa, makeCertificate } from '../../test/support/certs.ts';
import type { Ca, MadeCertificate } from '../../test/support/certs.ts';

const DAY = 86_400_000;

let dir: string;
let ca: Ca;
let chained: MadeCertificate;
let selfSigned: MadeCertificate;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-certificates-'));
  ca = makeCa(dir);
  chained = makeCertificate(dir, { names: ['Www.Example.com', '*.example.com', 'example.com'], ca, days: 20 });
  selfSigned = makeCertificate(dir, { names: ['self.test'] });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const filesOf = (made: MadeCertificate): CertificateFiles => ({ cert: made.certFile, key: made.keyFile });

/** The CertificateError checkCertificate throws for this text; fails the test if it throws nothing or something else. */
function refusal(files: CertificateFiles, cert: string, key: string): CertificateError {
  try {
    checkCertificate(files, cert, key);
  } catch (error) {
    expect(error).toBeInstanceOf(CertificateError);
    return error as CertificateError;
  }
  throw new Error('checkCertificate accepted the pair');
}

describe('checkCertificate', () => {
  it('accepts a leaf with its CA chain and reports its names, label, validity and fingerprint', () => {
    const checked = checkCertificate(filesOf(chained), chained.cert, chained.key);
    expect(checked.names).toEqual(['www.example.com', '*.example.com', 'example.com']);
    expect(checked.label).toBe('www.example.com');
    expect(checked.notAfter - Date.now()).toBeGreaterThan(19 * DAY);
    expect(checked.notAfter - Date.now()).toBeLessThan(21 * DAY);
    expect(checked.notBefore).toBeLessThanOrEqual(Date.now());
    expect(checked.fingerprint).toBe(new X509Certificate(chained.cert).fingerprint256);
    expect(checked.cert.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    expect(checked.cert).toContain(ca.cert.trim());
    expect({ certFile: checked.certFile, keyFile: checked.keyFile }).toEqual({ certFile: chained.certFile, keyFile: chained.keyFile });
    expect(Object.isFrozen(checked) && Object.isFrozen(checked.names)).toBe(true);
  });

  it('accepts a self-signed certificate', () => {
    const checked = checkCertificate(filesOf(selfSigned), selfSigned.cert, selfSigned.key);
    expect(checked.names).toEqual(['self.test']);
    expect(checked.label).toBe('self.test');
  });

  it('names a certificate without subjectAltName by its common name', () => {
    const made = makeCertificate(dir, { names: ['Legacy.Test'], commonNameOnly: true });
    const checked = checkCertificate(filesOf(made), made.cert, made.key);
    expect(checked.names).toEqual(['legacy.test']);
    expect(checked.label).toBe('legacy.test');
  });

  it('accepts an expired leaf, whose notAfter is in the past', () => {
    const made = makeCertificate(dir, { names: ['expired.test'], notAfterPast: true });
    const checked = checkCertificate(filesOf(made), made.cert, made.key);
    expect(checked.notAfter).toBeLessThan(Date.now());
  });

  it('accepts an RSA pair and publishes only the PEM blocks of a cert file that also holds its key', () => {
    const made = makeCertificate(dir, { names: ['rsa.test'], key: 'rsa' });
    const checked = checkCertificate(filesOf(made), `# leaf\n${made.cert}${made.key}`, made.key);
    expect(checked.cert).not.toContain('PRIVATE KEY');
    expect(checked.cert).not.toContain('# leaf');
    expect(checked.key.trim()).toBe(made.key.trim());
  });

  it('refuses a cert file that is garbage, naming the cert file', () => {
    const error = refusal(filesOf(selfSigned), 'not a certificate at all', selfSigned.key);
    expect(error.file).toBe(selfSigned.certFile);
    expect(error.problem).toBe('no PEM certificate found');
    expect(error.message).toBe(`${selfSigned.certFile}: no PEM certificate found`);
  });

  it('refuses a certificate block that does not parse, naming the cert file', () => {
    const error = refusal(filesOf(chained), chained.cert.replace(ca.cert, corruptPem(ca.cert)), chained.key);
    expect(error.file).toBe(chained.certFile);
    expect(error.problem).toMatch(/^certificate 2 of 2 in the chain does not parse/);
  });

  it('refuses a key file that is garbage or a key block that does not parse, naming the key file', () => {
    const garbage = refusal(filesOf(selfSigned), selfSigned.cert, 'garbage');
    expect(garbage.file).toBe(selfSigned.keyFile);
    expect(garbage.problem).toBe('no PEM private key found');
    const broken = refusal(filesOf(selfSigned), selfSigned.cert, corruptPem(selfSigned.key));
    expect(broken.file).toBe(selfSigned.keyFile);
    expect(broken.problem).toMatch(/^the private key does not parse/);
  });

  it('refuses a key that belongs to another certificate, naming the key file', () => {
    const error = refusal({ cert: chained.certFile, key: selfSigned.keyFile }, chained.cert, selfSigned.key);
    expect(error.file).toBe(selfSigned.keyFile);
    expect(error.problem).toContain('does not belong to the certificate for www.example.com');
  });

  it('refuses an encrypted private key, naming the key file', () => {
    const error = refusal(filesOf(selfSigned), selfSigned.cert, encryptedKey(selfSigned.keyFile));
    expect(error.file).toBe(selfSigned.keyFile);
    expect(error.problem).toBe('encrypted private keys are not supported');
  });

  it('refuses a pair that TLS itself refuses, a 512-bit RSA key, with OpenSSL\'s reason', () => {
    const made = makeCertificate(dir, { names: ['weak.test'], key: 'rsa-512' });
    const error = refusal(filesOf(made), made.cert, made.key);
    expect(error.file).toBe(made.certFile);
    expect(error.problem).toMatch(/^TLS refuses the pair: .*key too small/);
  });
});

describe('sniIndex', () => {
  const lookup = sniIndex(
    [
      { names: ['www.example.com', '*.example.com'], value: 'first' },
      { names: ['WWW.example.com', 'api.example.com', '*.Example.com', '*.b.example.com', 'dotted.test.'], value: 'second' },
    ],
    'default',
  );

  it('finds an exact name, whatever its case or a trailing dot', () => {
    expect(lookup('api.example.com')).toBe('second');
    expect(lookup('API.Example.COM')).toBe('second');
    expect(lookup('api.example.com.')).toBe('second');
    expect(lookup('dotted.test')).toBe('second');
    expect(lookup('dotted.test.')).toBe('second');
  });

  it('lets a wildcard stand in for exactly one label', () => {
    expect(lookup('a.example.com')).toBe('first');
    expect(lookup('A.EXAMPLE.com.')).toBe('first');
    expect(lookup('example.com')).toBe('default');
    expect(lookup('x.a.example.com')).toBe('default');
    expect(lookup('x.b.example.com')).toBe('second');
    expect(lookup('.example.com')).toBe('default');
  });

  it('gives a name to the earlier entry when two claim it', () => {
    expect(lookup('www.example.com')).toBe('first');
    expect(lookup('other.example.com')).toBe('first');
  });

  it('prefers an exact name over a wildcard that also covers it', () => {
    const exactLater = sniIndex([{ names: ['*.example.com'], value: 'wild' }, { names: ['api.example.com'], value: 'exact' }], 'default');
    expect(exactLater('api.example.com')).toBe('exact');
    expect(exactLater('web.example.com')).toBe('wild');
  });

  it('falls back to the default for an unknown name, an empty one or one without dots', () => {
    expect(lookup('unknown.test')).toBe('default');
    expect(lookup('')).toBe('default');
    expect(lookup('localhost')).toBe('default');
    expect(sniIndex([], 0)('example.com')).toBe(0);
  });
});
