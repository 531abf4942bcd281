// The demo's HTTPS certificate: a self-signed one for localhost, made with the openssl command at start, so a
// newcomer can try HTTPS and HTTP/2 (`curl -k`) without bringing a certificate.
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface DemoCertificate {
  readonly cert: string;
  readonly key: string;
}

/** Files in a fresh temp directory, valid for a week; null (and the demo serves plain HTTP only) when openssl is missing. */
export async function makeDemoCertificate(): Promise<DemoCertificate | null> {
  const dir = await mkdtemp(join(tmpdir(), 'meridian-demo-'));
  const cert = join(dir, 'localhost.crt');
  const key = join(dir, 'localhost.key');
  const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '7'];
  args.push('-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1', '-keyout', key, '-out', cert);
  return new Promise((resolve) => {
    execFile('openssl', args, { timeout: 10_000 }, (err) => resolve(err === null ? { cert, key } : null));
  });
}
