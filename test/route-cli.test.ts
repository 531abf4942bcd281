// `meridian route` as a user runs it: a child process with a YAML config and a fixture database in the flat
// ip-location-db schema, checked for the DESIGN.md §7a JSON shape, the human explanation and the exit codes.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeMmdb } from './support/mmdb-writer.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'src/cli/index.ts');

const STOCKHOLM_IP = '89.160.20.112';
const SEATTLE_IP = '216.160.83.56';
const MILAN_IPV6 = '2a02:d1c0::1';

let dir: string;
let v4: string;
let v6: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-route-cli-'));
  v4 = join(dir, 'dbip-city-ipv4.mmdb');
  v6 = join(dir, 'dbip-city-ipv6.mmdb');
  // The flat schema has no continent: Meridian derives it from the country.
  const flat = { languages: [], description: {} };
  await writeFile(
    v4,
    writeMmdb(
      [
        { network: '89.160.20.0/24', data: { city: 'Stockholm', country_code: 'SE', latitude: 59.33, longitude: 18.07 } },
        { network: '216.160.83.0/24', data: { city: 'Seattle', country_code: 'US', latitude: 47.61, longitude: -122.33 } },
      ],
      { databaseType: 'dbip-city-ipv4', ipVersion: 4, ...flat },
    ),
  );
  await writeFile(
    v6,
    writeMmdb([{ network: '2a02:d1c0::/29', data: { city: 'Milan', country_code: 'IT', latitude: 45.46, longitude: 9.19 } }], {
      databaseType: 'dbip-city-ipv6',
      ipVersion: 6,
      ...flat,
    }),
  );
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** The four seed regions, two zones each; self is us-east/az-3, so the local zone is not the first in the file. */
function yamlConfig(geo: string): string {
  return `
self: { region: us-east, zone: az-3 }
${geo}
regions:
  us-west:
    location: [45.52, -122.68]
    zones:
      az-1: { endpoints: [http://10.1.1.10] }
      az-3: { endpoints: [http://10.1.3.10] }
  us-east:
    location: [39.04, -77.49]
    zones:
      az-1: { endpoints: [http://10.2.1.10] }
      az-3: { endpoints: [http://10.2.3.10] }
  eu-north:
    location: [59.33, 18.07]
    zones:
      az-1: { endpoints: [http://10.3.1.10] }
      az-3: { endpoints: [http://10.3.3.10] }
  eu-south:
    location: [45.46, 9.19]
    zones:
      az-1: { endpoints: [http://10.4.1.10] }
      az-3: { endpoints: [http://10.4.3.10] }
routing:
  localPreferenceKm: 1000
  fences:
    - { name: eu-residency, match: { continent: EU }, regions: [eu-north, eu-south], mode: strict }
  projects:
    shop: { home: eu-south }
`;
}

async function configFile(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function meridian(...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, MERIDIAN_REGION: '', MERIDIAN_ZONE: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const endpoint = (region: string, zone: string) => {
  const octet = { 'us-west': 1, 'us-east': 2, 'eu-north': 3, 'eu-south': 4 }[region];
  return { region, zone, endpoint: `http://10.${octet}.${zone.slice(3)}.10` };
};

describe('meridian route with a fixture database', () => {
  let config: string;
  beforeAll(async () => {
    config = await configFile('meridian.yaml', yamlConfig(`geo: { databases: [${v4}, ${v6}] }`));
  });

  it('prints exactly the documented JSON shape, candidates in the order they would be tried', async () => {
    const run = await meridian('route', '--config', config, '--ip', SEATTLE_IP, '--json');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout.trim().split('\n')).toHaveLength(1);
    const out = JSON.parse(run.stdout);
    expect(Object.keys(out)).toEqual(['ip', 'location', 'home', 'candidates', 'reason', 'code', 'regions']);
    expect(out).toEqual({
      ip: SEATTLE_IP,
      location: { lat: 47.61, lon: -122.33, country: 'US', continent: 'NA' },
      home: 'us-west',
      candidates: [
        endpoint('us-west', 'az-1'),
        endpoint('us-west', 'az-3'),
        // The local region puts the local zone first.
        endpoint('us-east', 'az-3'),
        endpoint('us-east', 'az-1'),
        endpoint('eu-north', 'az-1'),
        endpoint('eu-north', 'az-3'),
        endpoint('eu-south', 'az-1'),
        endpoint('eu-south', 'az-3'),
      ],
      reason: expect.stringMatching(/^nearest allowed region us-west \(\d+ km\)$/),
      code: 'nearest',
      regions: ['us-west', 'us-east', 'eu-north', 'eu-south'].map((region) => ({
        region,
        distanceKm: expect.any(Number),
        allowed: true,
        cost: { distanceMs: expect.any(Number), slownessMs: 0, errorMs: 0, localMs: region === 'us-east' ? -10 : 0, totalMs: expect.any(Number) },
        latency: { rttMs: null, floorMs: null, errorRatio: 0 },
      })),
    });
    // The cost is the distance at 100 km per ms, plus the local preference's bonus for this instance's region.
    for (const r of out.regions) expect(r.cost.totalMs).toBeCloseTo(r.distanceKm / 100 + r.cost.localMs, 6);
  });

  it('keeps a fenced client inside its fence and says so in the reason', async () => {
    const out = JSON.parse((await meridian('route', '--config', config, '--ip', STOCKHOLM_IP, '--json')).stdout);
    expect(out.location).toEqual({ lat: 59.33, lon: 18.07, country: 'SE', continent: 'EU' });
    expect(out.home).toBe('eu-north');
    expect(out.candidates).toEqual([endpoint('eu-north', 'az-1'), endpoint('eu-north', 'az-3'), endpoint('eu-south', 'az-1'), endpoint('eu-south', 'az-3')]);
    expect(out.reason).toContain('fence eu-residency (strict)');
  });

  it('places an IPv6 client from the IPv6 database', async () => {
    const out = JSON.parse((await meridian('route', '--config', config, '--ip', MILAN_IPV6, '--json')).stdout);
    expect(out.location).toMatchObject({ country: 'IT', continent: 'EU' });
    expect(out.home).toBe('eu-south');
  });

  it('explains the decision for humans: location, distances, fence and numbered candidates', async () => {
    const run = await meridian('route', '--config', config, '--ip', STOCKHOLM_IP);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`client   ${STOCKHOLM_IP}`);
    expect(run.stdout).toContain('location SE/EU at 59.33, 18.07');
    expect(run.stdout).toMatch(/^home {5}eu-north$/m);
    expect(run.stdout).toMatch(/^fence {4}eu-residency \(strict\): eu-north, eu-south$/m);
    // Latency order, offline: nothing is measured, so each cost is the distance term (and this region's bonus).
    expect(run.stdout).toContain('cost ms = distance + slowness + errors + local');
    expect(run.stdout).toMatch(/^ {2}eu-north +0 km +0\.0 = 0\.0 \+ 0\.0 \+ 0\.0 \+ 0\.0 +rtt not measured, errors 0\.0 %$/m);
    expect(run.stdout).toMatch(/^ {2}eu-south +1652 km +16\.5 = 16\.5 \+ 0\.0 \+ 0\.0 \+ 0\.0 +rtt not measured, errors 0\.0 %$/m);
    expect(run.stdout).toMatch(/misroute GeoDNS should have sent this client to eu-north/);
    expect(run.stdout).toMatch(/^ +1\. eu-north\/az-1 {2}http:\/\/10\.3\.1\.10$/m);
    expect(run.stdout).not.toContain('us-east/');
  });

  it('routes a private address as unknown, to the local region', async () => {
    const run = await meridian('route', '--config', config, '--ip', '10.20.30.40', '--json');
    const out = JSON.parse(run.stdout);
    expect(out.location).toBeNull();
    expect(out.home).toBe('us-east');
    expect(out.candidates.slice(0, 2)).toEqual([endpoint('us-east', 'az-3'), endpoint('us-east', 'az-1')]);
    expect(out.reason).toBe('location unknown → local region us-east');
    const human = await meridian('route', '--config', config, '--ip', '10.20.30.40');
    expect(human.stdout).toContain('location unknown (private address or not in the database)');
  });

  it('applies project affinity given with --project', async () => {
    const out = JSON.parse((await meridian('route', '--config', config, '--ip', SEATTLE_IP, '--project', 'shop', '--json')).stdout);
    expect(out.home).toBe('eu-south');
    expect(out.candidates).toEqual([endpoint('eu-south', 'az-1'), endpoint('eu-south', 'az-3')]);
    expect(out.reason).toBe('project affinity (shop) → eu-south');
  });

  it.each(['not-an-ip', '300.1.1.1', '2001:db8::g'])('exits 2 for the bad address %s', async (ip) => {
    const run = await meridian('route', '--config', config, '--ip', ip, '--json');
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('is not an IP address');
  });
});

describe('meridian route with a bad config', () => {
  it('exits 1 and lists every problem with its field path', async () => {
    const bad = yamlConfig(`geo: { databases: [${v4}] }`)
      .replace('localPreferenceKm: 1000', 'localPreferenceKm: -5')
      .replace('http://10.1.3.10', 'ftp://10.1.3.10');
    const run = await meridian('route', '--config', await configFile('bad.yaml', bad), '--ip', STOCKHOLM_IP, '--json');
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('regions.us-west.zones.az-3.endpoints[0]: not an http(s) URL');
    expect(run.stderr).toContain('routing.localPreferenceKm: ');
    expect(run.stderr).not.toMatch(/^\s+at /m);
    // The cross-field check runs only once the shape is valid; it has its own path too.
    const fenced = yamlConfig(`geo: { databases: [${v4}] }`).replace('[eu-north, eu-south]', '[eu-north, eu-west]');
    const second = await meridian('route', '--config', await configFile('bad-fence.yaml', fenced), '--ip', STOCKHOLM_IP);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/routing\.fences\[0\]\.regions\[1\]: "eu-west" is not one of the regions/);
  });
});

describe('meridian route with a database that cannot be opened', () => {
  it('exits 1 with one line naming the file, not a stack trace', async () => {
    const missing = join(dir, 'missing.mmdb');
    const run = await meridian('route', '--config', await configFile('missing-db.yaml', yamlConfig(`geo: { databases: [${missing}] }`)), '--ip', STOCKHOLM_IP);
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^meridian route: geo database ${missing}: cannot read the file`))]);
  });
});

describe('meridian route with the bundled database', () => {
  it('places 81.2.69.142 in Europe and sends it to a European region', async () => {
    const config = await configFile('bundled.yaml', yamlConfig(''));
    const run = await meridian('route', '--config', config, '--ip', '81.2.69.142', '--json');
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout);
    expect(out.location).toMatchObject({ continent: 'EU' });
    expect(['eu-north', 'eu-south']).toContain(out.home);
    expect(out.candidates.every((c: { region: string }) => c.region.startsWith('eu-'))).toBe(true);
  });
});
