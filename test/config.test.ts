// The config file as an operator meets it: every mistake is reported at once with its field path, durations and
// catalog names are understood, the environment picks the instance, and `meridian check` exits with the verdict.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileConfig } from '../src/config/compile.ts';
import { buildConfig } from '../src/config/build.ts';
import { ConfigError } from '../src/config/errors.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_LISTEN_PORT, DEFAULT_MAX_ATTEMPTS, DEFAULT_WORKERS } from '../src/config/defaults.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'src/cli/index.ts');

/** A small valid config; each test breaks one copy of it. */
function valid(): Record<string, any> {
  return {
    self: { region: 'us-east', zone: 'az-1' },
    regions: {
      'us-west': { location: [45.52, -122.68], zones: { 'az-1': { endpoints: ['http://10.1.1.10'] }, 'az-3': { endpoints: ['http://10.1.3.10:8080'] } } },
      'us-east': { location: 'aws:us-east-1', zones: { 'az-1': { endpoints: ['http://10.2.1.10'] }, 'az-2': { endpoints: ['https://10.2.2.10'] } } },
    },
  };
}

/** The problems compileConfig reports, as `path: message` lines; fails the test if the config compiles. */
function problems(raw: unknown, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    compileConfig(raw, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
  }
  throw new Error('expected the config to be rejected');
}

describe('compileConfig', () => {
  test('a valid config compiles, with defaults filled in and endpoints in file order', () => {
    const config = compileConfig(valid(), {});
    expect(config.topology.self).toEqual({ region: 'us-east', zone: 'az-1' });
    expect(config.topology.endpoints.map((e) => e.key)).toEqual([
      'us-west/az-1/http://10.1.1.10',
      'us-west/az-3/http://10.1.3.10:8080',
      'us-east/az-1/http://10.2.1.10',
      'us-east/az-2/https://10.2.2.10',
    ]);
    expect(config.topology.endpoints.map((e) => [e.tls, e.port])).toEqual([[false, 80], [false, 8080], [false, 80], [true, 443]]);
    expect(config.listen.map((l) => [l.name, l.protocol, l.port])).toEqual([["http", "http", DEFAULT_LISTEN_PORT]]);
    expect(config.timeouts.connect).toBe(DEFAULT_CONNECT_TIMEOUT_MS);
    expect(config.retries.maxAttempts).toBe(DEFAULT_MAX_ATTEMPTS);
    expect(Object.isFrozen(config.topology.endpoints[0])).toBe(true);
  });

  test('an endpoint that is not an http(s) URL is named by its field path', () => {
    const raw = valid();
    raw.regions['us-west'].zones['az-1'].endpoints = ['ftp://10.1.1.10'];
    expect(problems(raw)).toEqual(['regions.us-west.zones.az-1.endpoints[0]: not an http(s) URL']);
  });

  test('an unknown key is an error, at any depth', () => {
    const raw = valid();
    raw.listen = { prot: 8080 };
    raw.regions['us-east'].zones['az-2'].endpoint = 'http://typo';
    raw.colour = 'blue';
    expect(problems(raw).sort()).toEqual(['colour: unknown key', 'listen.prot: unknown key', 'regions.us-east.zones.az-2.endpoint: unknown key']);
  });

  test('every problem is reported at once, schema and cross-field alike', () => {
    const raw = valid();
    raw.self.region = 'eu-central';
    raw.listen = { prot: 8080 };
    raw.timeouts = { connect: '5x' };
    raw.regions['us-west'].zones['az-1'].endpoints = ['not a url'];
    raw.regions['us-east'].location = 'aws:mars-north-1';
    const lines = problems(raw);
    expect(lines).toHaveLength(5);
    expect(lines).toEqual(
      expect.arrayContaining([
        'listen.prot: unknown key',
        'regions.us-west.zones.az-1.endpoints[0]: not an http(s) URL',
        expect.stringMatching(/^timeouts\.connect: not a duration/),
        expect.stringMatching(/^regions\.us-east\.location: unknown catalog region "aws:mars-north-1"/),
        expect.stringMatching(/^self\.region: "eu-central" is not one of the regions \(us-west, us-east\)/),
      ]),
    );
  });

  test('self.region must be one of the regions and self.zone one of its zones', () => {
    const raw = valid();
    raw.self = { region: 'eu-north', zone: 'az-1' };
    expect(problems(raw)).toEqual(['self.region: "eu-north" is not one of the regions (us-west, us-east)']);
    raw.self = { region: 'us-east', zone: 'az-3' };
    expect(problems(raw)).toEqual(['self.zone: "az-3" is not a zone of us-east (az-1, az-2)']);
  });

  test('durations accept 250ms, 5s, 2m and bare milliseconds; anything else names the field', () => {
    const raw = valid();
    raw.timeouts = { connect: '250ms', response: '5s', idle: '2m', keepAlive: 1500 };
    expect(compileConfig(raw, {}).timeouts).toMatchObject({ connect: 250, response: 5_000, idle: 120_000, keepAlive: 1_500 });
    raw.timeouts = { connect: '5x', response: '-1s' };
    raw.shutdown = { drainDelay: 'soon' };
    expect(problems(raw).sort()).toEqual([
      'shutdown.drainDelay: not a duration ("soon"); use e.g. 250ms, 5s, 2m',
      'timeouts.connect: not a duration ("5x"); use e.g. 250ms, 5s, 2m',
      'timeouts.response: not a duration ("-1s"); use e.g. 250ms, 5s, 2m',
    ]);
  });

  test('MERIDIAN_REGION and MERIDIAN_ZONE override the file, and are checked like it', () => {
    const config = compileConfig(valid(), { MERIDIAN_REGION: 'us-west', MERIDIAN_ZONE: 'az-3' });
    expect(config.topology.self).toEqual({ region: 'us-west', zone: 'az-3' });
    expect(problems(valid(), { MERIDIAN_ZONE: 'az-9' })).toEqual(['self.zone: "az-9" is not a zone of us-east (az-1, az-2)']);
  });

  test('a catalog location resolves to coordinates, and an unknown catalog name is rejected', () => {
    const config = compileConfig(valid(), {});
    const east = config.topology.regions.find((r) => r.name === 'us-east')!;
    expect([east.lat, east.lon]).toEqual([expect.closeTo(39, 0), expect.closeTo(-77.5, 0)]);
    const raw = valid();
    raw.regions['us-east'].location = 'aws:us-east-9';
    expect(problems(raw)).toEqual([expect.stringMatching(/^regions\.us-east\.location: unknown catalog region "aws:us-east-9"/)]);
  });

  test('an endpoint must be a bare origin and may appear only once', () => {
    const raw = valid();
    raw.regions['us-west'].zones['az-1'].endpoints = ['http://10.1.1.10/v1'];
    raw.regions['us-east'].zones['az-2'].endpoints = ['http://10.1.3.10:8080'];
    expect(problems(raw)).toEqual([
      'regions.us-west.zones.az-1.endpoints[0]: an endpoint is an origin (scheme, host, port); drop the path',
      'regions.us-east.zones.az-2.endpoints[0]: duplicate of regions.us-west.zones.az-3.endpoints[0]',
    ]);
  });

  test('workers is auto or a whole number of at least 1, auto when absent', () => {
    expect(DEFAULT_WORKERS).toBe('auto');
    expect(compileConfig(valid(), {}).workers).toBe('auto');
    expect(compileConfig({ ...valid(), workers: 'auto' }, {}).workers).toBe('auto');
    expect(compileConfig({ ...valid(), workers: 4 }, {}).workers).toBe(4);
    expect(compileConfig({ ...valid(), workers: 1 }, {}).workers).toBe(1);
  });

  test.each([
    [0, 'not a worker count (0); use auto or a whole number of at least 1'],
    [-1, 'not a worker count (-1); use auto or a whole number of at least 1'],
    [1.5, 'not a worker count (1.5); use auto or a whole number of at least 1'],
    ['many', 'not a worker count ("many"); use auto or a whole number of at least 1'],
    ['4', 'not a worker count ("4"); use auto or a whole number of at least 1'],
  ])('workers: %j is rejected, naming the field', (workers, message) => {
    expect(problems({ ...valid(), workers })).toEqual([`workers: ${message}`]);
  });

  test('routing.order and routing.latency: defaults, and bad values named by their field', () => {
    const config = compileConfig(valid(), {});
    expect(config.routing.order).toBe('latency');
    expect(config.routing.latency).toEqual({ errorPenaltyMs: 200, marginMs: 10, windowMs: 30_000 });
    const tuned = compileConfig({ ...valid(), routing: { order: 'distance', latency: { margin: '25ms', window: '2m', errorPenalty: '1s' } } }, {});
    expect(tuned.routing).toMatchObject({ order: 'distance', latency: { errorPenaltyMs: 1000, marginMs: 25, windowMs: 120_000 } });
    expect(problems({ ...valid(), routing: { order: 'fastest' } })).toEqual([expect.stringMatching(/^routing\.order: .*"latency".*"distance"/)]);
    expect(problems({ ...valid(), routing: { latency: { window: 'soon' } } })).toEqual(['routing.latency.window: not a duration ("soon"); use e.g. 250ms, 5s, 2m']);
    expect(problems({ ...valid(), routing: { latency: { hysteresis: 1 } } })).toEqual(['routing.latency.hysteresis: unknown key']);
  });

  test('config.input builds again, with no environment and no schema, to an equal config (what a data-plane thread does)', () => {
    const raw = valid();
    raw.workers = 2;
    raw.geo = { trustedProxies: ['10.0.0.0/8', '2001:db8::/32'] };
    const config = compileConfig(raw, { MERIDIAN_REGION: 'us-west', MERIDIAN_ZONE: 'az-3', MERIDIAN_ADMIN_TOKEN: 'a-token-of-sixteen-chars' });
    // The overrides are baked into input; the caller's object is left as it was, unfrozen.
    expect(config.input).toMatchObject({ self: { region: 'us-west', zone: 'az-3' }, admin: { token: 'a-token-of-sixteen-chars' } });
    expect(raw.self).toEqual({ region: 'us-east', zone: 'az-1' });
    expect(Object.isFrozen(raw) || Object.isFrozen(raw.regions) || Object.isFrozen(raw.geo.trustedProxies)).toBe(false);
    expect(Object.isFrozen((config.input as Record<string, any>).regions['us-west'].zones)).toBe(true);
    // Plain data, so it crosses postMessage; the compiled config (CIDR sets) would not build the same way again.
    const again = buildConfig(structuredClone(config.input));
    expect(again).toStrictEqual(config);
    expect(again.topology.self).toEqual({ region: 'us-west', zone: 'az-3' });
    expect(again.admin.token).toBe('a-token-of-sixteen-chars');
    // toStrictEqual cannot see a CidrSet's private ranges: ask the rebuilt one.
    expect(['10.1.2.3', '2001:db8::1', '192.168.1.1'].map((ip) => again.geo.trustedProxies.has(ip))).toEqual([true, true, false]);
    // The frozen input itself builds too.
    expect(buildConfig(config.input)).toStrictEqual(config);
  });

  test('geo.clientIpHeader joins the client-address headers dropped from untrusted peers, and may not be Host', () => {
    const fixed = ['x-real-ip', 'forwarded', 'true-client-ip', 'x-client-ip', 'cf-connecting-ip'];
    expect([...compileConfig(valid(), {}).geo.clientAddressHeaders]).toEqual(fixed);
    const raw = valid();
    raw.geo = { clientIpHeader: 'X-Edge-Client-IP' };
    expect([...compileConfig(raw, {}).geo.clientAddressHeaders]).toEqual([...fixed, 'x-edge-client-ip']);
    // Dropping Host from every untrusted request would break Appwrite's routing.
    raw.geo = { clientIpHeader: 'HOST' };
    expect(problems(raw)).toEqual(['geo.clientIpHeader: Host names the site, not the client']);
  });
});

describe('meridian check', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meridian-config-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  async function file(name: string, text: string): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, text);
    return path;
  }

  /** Runs the CLI as an operator would, with no MERIDIAN_* variables leaking in from the test environment. */
  function cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('MERIDIAN_')));
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    return new Promise((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  const YAML = `
self: { region: us-east, zone: az-1 }
listen: { host: 0.0.0.0, port: 8080 }
regions:
  us-west:
    location: aws:us-west-2
    zones:
      az-1: { endpoints: [http://10.1.1.10] }
  us-east:
    location: [39.04, -77.49]
    zones:
      az-1: { endpoints: [http://10.2.1.10, http://10.2.1.11] }
timeouts: { connect: 2s, response: 900s }
`;

  test('exits 0 on a valid YAML file', async () => {
    const result = await cli('check', '--config', await file('good.yaml', YAML));
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/ok \(2 regions, 3 endpoints\)/);
    expect(result.code).toBe(0);
  });

  test('exits 0 on a valid JSON file', async () => {
    const json = JSON.stringify({ ...valid(), timeouts: { connect: '2s' } }, null, 2);
    const result = await cli('check', '--config', await file('good.json', json));
    expect(result.stdout).toMatch(/ok \(2 regions, 4 endpoints\)/);
    expect(result.code).toBe(0);
  });

  test('accepts the example config shipped in examples/', async () => {
    const result = await cli('check', '--config', join(ROOT, 'examples/meridian.yaml'));
    expect(result.code).toBe(0);
  });

  test('exits 1 and lists every error with its field path', async () => {
    const bad = YAML.replace('region: us-east, zone: az-1', 'region: us-central, zone: az-1')
      .replace('port: 8080', 'prot: 8080')
      .replace('http://10.1.1.10', 'ftp://10.1.1.10')
      .replace('connect: 2s', 'connect: 2x');
    const result = await cli('check', '--config', await file('bad.yaml', bad));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('listen.prot: unknown key');
    expect(result.stderr).toContain('regions.us-west.zones.az-1.endpoints[0]: not an http(s) URL');
    expect(result.stderr).toContain('timeouts.connect: not a duration ("2x")');
    expect(result.stderr).toContain('self.region: "us-central" is not one of the regions (us-west, us-east)');
  });

  test('exits 1 naming the file when it is not YAML or cannot be read', async () => {
    const broken = await cli('check', '--config', await file('broken.yaml', 'self: [unclosed\n'));
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain('broken.yaml');
    const missing = await cli('check', '--config', join(dir, 'missing.yaml'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('missing.yaml');
  });

  test('--help exits 0, an unknown command or a missing --config exits 2', async () => {
    const help = await cli('--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/usage: meridian <command>/);
    expect(help.stdout).toMatch(/check/);
    const unknown = await cli('frobnicate');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const noConfig = await cli('check');
    expect(noConfig.code).toBe(2);
    expect(noConfig.stderr).toContain('--config FILE is required');
  });
});

describe('a config that is not a mapping', () => {
  test.each([
    ['null', null, 'the config file is empty'],
    ['undefined', undefined, 'the config file is empty'],
    ['a list', [{ self: {} }], 'must be a mapping of sections, got a list'],
    ['a string', 'self: x', 'must be a mapping of sections, got a string'],
  ])('%s is a field-path problem at the root, not a crash', (_name, raw, message) => {
    let error: unknown;
    try {
      compileConfig(raw, {});
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([{ path: '', message }]);
  });
});
