// `meridian check` reads and checks the TLS certificate pairs a config names, as a start would, so a broken or
// mismatched pair is found before it is deployed rather than when the HTTPS listener starts.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeCertificate } from './support/certs.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'src/cli/index.ts');

function check(config: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('MERIDIAN_')));
  const child = spawn(process.execPath, [CLI, 'check', '--config', config], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('meridian check with certificates', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meridian-check-tls-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  async function config(pairs: readonly { cert: string; key: string }[]): Promise<string> {
    const path = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
    const body = {
      self: { region: 'us-east', zone: 'az-1' },
      listen: [{ protocol: 'https', port: 8443 }],
      tls: { certificates: pairs },
      regions: { 'us-east': { location: [39.04, -77.49], zones: { 'az-1': { endpoints: ['http://10.2.1.10'] } } } },
    };
    await writeFile(path, JSON.stringify(body));
    return path;
  }

  test('a good pair passes and is named with its expiry', async () => {
    const site = makeCertificate(dir, { names: ['appwrite.example.test'], days: 30 });
    const result = await check(await config([{ cert: site.certFile, key: site.keyFile }]));
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/ok \(1 regions, 1 endpoints, certificates: appwrite\.example\.test until \d{4}-\d\d-\d\d\)/);
  });

  test('a missing file and a mismatched key are each listed with their field path and file, and exit 1', async () => {
    const site = makeCertificate(dir, { names: ['appwrite.example.test'] });
    const other = makeCertificate(dir, { names: ['other.example.test'] });
    const missing = join(dir, 'nowhere.pem');
    const result = await check(await config([{ cert: site.certFile, key: other.keyFile }, { cert: missing, key: site.keyFile }]));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`tls.certificates[0]: ${other.keyFile}: the private key does not belong to the certificate`);
    expect(result.stderr).toContain(`tls.certificates[1]: ${missing}: cannot be read`);
  });
});
