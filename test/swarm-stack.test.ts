// The Swarm stack in deploy/swarm deploys the reference topology (four regions of two zones): one Meridian service per
// zone pinned by node labels, the proxy and probe listeners published in host mode, the admin port only on an overlay
// network that Prometheus shares, geoipupdate feeding the database Meridian reads, and a Meridian config that
// Meridian itself accepts for every service. Each check runs on the file as written and, when the docker client is
// installed, on what `docker stack config` makes of it (no engine needed).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { describe, expect, test } from 'vitest';
import { compileConfig } from '../src/config/compile.ts';
import type { MeridianConfig } from '../src/config/types.ts';

const SWARM = fileURLToPath(new URL('../deploy/swarm/', import.meta.url));
const STACK = resolve(SWARM, 'meridian-stack.yml');
const MERIDIAN_CONFIG_TARGET = '/etc/meridian/meridian.yaml';
const PROMETHEUS_CONFIG_TARGET = '/etc/prometheus/prometheus.yml';

const REGIONS = ['us-west', 'us-east', 'eu-north', 'eu-south'];
const ZONES = ['az-1', 'az-3'];
const AZS = REGIONS.flatMap((region) => ZONES.map((zone) => ({ region, zone, name: `meridian-${region}-${zone}` })));

type Doc = Record<string, any>;

/** The stack as written, with YAML merge keys (`<<: *meridian`) applied the way docker applies them. */
function fromFile(): Doc {
  return parse(readFileSync(STACK, 'utf8'), { merge: true });
}

function dockerAvailable(): boolean {
  return spawnSync('sh', ['-c', 'command -v docker'], { stdio: 'ignore' }).status === 0;
}

/** `docker stack config` validates the file against the compose schema offline and prints it normalized. */
function fromDocker(): { status: number | null; output: string; stack: Doc | null } {
  const result = spawnSync('docker', ['stack', 'config', '-c', STACK], { encoding: 'utf8', timeout: 20_000 });
  const stack = result.status === 0 ? (parse(result.stdout, { merge: true }) as Doc) : null;
  return { status: result.status, output: `${result.stdout}${result.stderr}`, stack };
}

// ---- Reading services in either form: the file's short forms and docker's normalized long forms. ----

function envOf(service: Doc): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map((entry: string) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]));
  }
  return Object.fromEntries(Object.entries(env).map(([key, value]) => [key, String(value)]));
}

function networksOf(service: Doc): string[] {
  const networks = service.networks ?? [];
  return Array.isArray(networks) ? networks : Object.keys(networks);
}

function constraintsOf(service: Doc): string[] {
  return (service.deploy?.placement?.constraints ?? []).map((c: string) => c.replace(/\s+/g, ' ').trim());
}

type Port = { target: number; published?: number; mode?: string; protocol?: string };
function portsOf(service: Doc): Port[] {
  return (service.ports ?? []).map((port: unknown) => {
    // The short form (`80:8080`) always goes through the ingress mesh; keep it visible as such.
    if (typeof port !== 'object' || port === null) return { target: Number(String(port).split(':').pop()), published: 0, mode: 'ingress' };
    const long = port as Doc;
    return { target: Number(long.target), published: long.published === undefined ? undefined : Number(long.published), mode: long.mode ?? 'ingress', protocol: long.protocol };
  });
}

type Mount = { source: string; target: string; readOnly: boolean; type: string };
function volumesOf(service: Doc): Mount[] {
  return (service.volumes ?? []).map((volume: unknown) => {
    if (typeof volume === 'string') {
      const [source, target, mode] = volume.split(':');
      return { source, target, readOnly: mode === 'ro', type: source.startsWith('/') || source.startsWith('.') ? 'bind' : 'volume' };
    }
    const long = volume as Doc;
    return { source: long.source, target: long.target, readOnly: long.read_only === true, type: long.type };
  });
}

/** Where each referenced secret or config appears inside the container (Swarm's default for secrets: /run/secrets/NAME). */
function mountsOf(refs: unknown[] | undefined, defaultDir: string): { source: string; target: string }[] {
  return (refs ?? []).map((ref) => {
    if (typeof ref === 'string') return { source: ref, target: posix.join(defaultDir, ref) };
    const long = ref as Doc;
    const target: string = long.target ?? long.source;
    return { source: long.source, target: target.startsWith('/') ? target : posix.join(defaultDir, target) };
  });
}

/** The file behind a top-level config, resolved the way docker resolves it: relative to the stack file's folder. */
function configFile(stack: Doc, service: Doc, target: string): string {
  const mount = mountsOf(service.configs, '/').find((m) => m.target === target);
  expect(mount, `a config mounted at ${target}`).toBeDefined();
  const file = stack.configs?.[mount!.source]?.file;
  expect(file, `configs.${mount!.source}.file`).toEqual(expect.any(String));
  return resolve(SWARM, file);
}

/** A Go duration as Swarm writes it (`35s`, `1m30s`, `1m0s`), in milliseconds. */
function durationMs(text: string): number {
  const units: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1, us: 0.001, µs: 0.001, ns: 0.000001 };
  const parts = [...String(text).matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/g)];
  expect(parts.map((p) => p[0]).join(''), `duration ${text}`).toBe(String(text));
  return parts.reduce((sum, [, value, unit]) => sum + Number(value) * units[unit], 0);
}

/** One of the eight services; a missing one fails the test by name. */
function serviceOf(stack: Doc, name: string): Doc {
  const service = stack.services?.[name];
  expect(service, `the stack has no service ${name}`).toBeDefined();
  return service;
}

function meridianServices(stack: Doc): [string, Doc][] {
  return Object.entries(stack.services as Doc).filter(([name]) => name.startsWith('meridian-'));
}

/** The stack's Meridian config compiled by Meridian for one service, with that service's environment. */
function compiledFor(stack: Doc, service: Doc): MeridianConfig {
  const file = configFile(stack, service, MERIDIAN_CONFIG_TARGET);
  return compileConfig(parse(readFileSync(file, 'utf8')), envOf(service), file);
}

function rawMeridianConfig(stack: Doc): Doc {
  const [, service] = meridianServices(stack)[0];
  return parse(readFileSync(configFile(stack, service, MERIDIAN_CONFIG_TARGET), 'utf8'));
}

const LOOPBACK = /^(127\.|::1$|localhost$)/;

/** The Dockerfile's `USER node`: uid and gid 1000 in the node images. */
const IMAGE_UID = 1000;

/** Whether the image's user can read a mounted secret: Swarm makes it uid 0, gid 0, mode 0444 unless told otherwise. */
function readableByImageUser(ref: unknown): boolean {
  if (typeof ref === 'string') return true;
  const long = ref as Doc;
  const mode = long.mode === undefined ? 0o444 : Number(long.mode);
  const uid = long.uid === undefined ? 0 : Number(long.uid);
  const gid = long.gid === undefined ? 0 : Number(long.gid);
  return (uid === IMAGE_UID && (mode & 0o400) !== 0) || (gid === IMAGE_UID && (mode & 0o040) !== 0) || (mode & 0o004) !== 0;
}

// ---- The checks, for each view of the stack. ----

function stackChecks(load: () => Doc): void {
  test('eight Meridian services, one per zone, pinned by the node labels `region` and `az`, each naming its zone', () => {
    const stack = load();
    expect(meridianServices(stack).map(([name]) => name).sort()).toEqual(AZS.map((az) => az.name).sort());
    for (const { region, zone, name } of AZS) {
      const service = serviceOf(stack, name);
      expect(constraintsOf(service), name).toEqual(expect.arrayContaining([`node.labels.region == ${region}`, `node.labels.az == ${zone}`]));
      expect(envOf(service), name).toMatchObject({ MERIDIAN_REGION: region, MERIDIAN_ZONE: zone });
      expect(service.deploy?.mode ?? 'replicated', name).toBe('replicated');
      expect(service.deploy?.replicas, name).toBe(1);
    }
  });

  test("the stack's Meridian config passes Meridian's own validation with each service's environment", () => {
    const stack = load();
    for (const { region, zone, name } of AZS) {
      const config = compiledFor(stack, serviceOf(stack, name));
      expect(config.topology.self, name).toEqual({ region, zone });
      expect(config.topology.regions.map((r) => r.name).sort(), name).toEqual([...REGIONS].sort());
      for (const r of config.topology.regions) expect(r.zones.map((z) => z.name).sort(), `${name}: ${r.name}`).toEqual(ZONES);
      expect(config.probe, `${name}: probe listener`).toEqual({ host: '0.0.0.0', port: 8081 });
    }
  });

  test('HTTPS on 443, the redirect to it on 80 and the probe listener are published in host mode; the admin port is not published at all', () => {
    const stack = load();
    for (const [name, service] of meridianServices(stack)) {
      const config = compiledFor(stack, service);
      const ports = portsOf(service);
      const published = (target: number) => ports.filter((p) => p.target === target);
      const https = config.listen.find((l) => l.protocol === 'https');
      const redirect = config.listen.find((l) => l.protocol === 'redirect');
      expect(https, `${name}: an https listener`).toBeDefined();
      expect(published(https!.port), `${name}: https port ${https!.port}`).toEqual([expect.objectContaining({ target: https!.port, published: 443, mode: 'host' })]);
      expect(published(redirect!.port), `${name}: redirect port ${redirect!.port}`).toEqual([expect.objectContaining({ target: redirect!.port, published: 80, mode: 'host' })]);
      // Clients reach 443, not the container's port: the Location must say so.
      expect(redirect!.redirect.httpsPort, `${name}: redirect.httpsPort`).toBe(443);
      expect(published(config.probe!.port), `${name}: probe port ${config.probe!.port}`).toEqual([
        expect.objectContaining({ target: config.probe!.port, published: config.probe!.port, mode: 'host' }),
      ]);
      for (const host of [https!.host, redirect!.host, config.probe!.host]) expect(LOOPBACK.test(host), `${name}: published listeners bind beyond loopback`).toBe(false);
      expect(published(config.admin.port), `${name}: admin port ${config.admin.port} must not be published`).toEqual([]);
      // Anything published goes around the ingress mesh, which would hide the client's address.
      for (const port of ports) expect(port.mode, `${name}: port ${port.target}`).toBe('host');
    }
    // Nothing else in the stack publishes a port: Prometheus and geoipupdate stay internal.
    for (const [name, service] of Object.entries(stack.services as Doc)) {
      if (!name.startsWith('meridian-')) expect(portsOf(service), name).toEqual([]);
    }
  });

  test('the admin port is reachable on an overlay network that every Meridian service shares with Prometheus', () => {
    const stack = load();
    const prometheus = serviceOf(stack, 'prometheus');
    const shared = Object.entries(stack.networks ?? {})
      .filter(([, network]) => (network as Doc | null)?.driver === 'overlay')
      .map(([name]) => name)
      .filter((network) => networksOf(prometheus).includes(network) && meridianServices(stack).every(([, s]) => networksOf(s).includes(network)));
    expect(shared, 'an overlay network joined by Prometheus and all eight Meridian services').not.toEqual([]);
    for (const [name, service] of meridianServices(stack)) {
      const { admin } = compiledFor(stack, service);
      expect(LOOPBACK.test(admin.host), `${name}: admin.host ${admin.host} must listen beyond loopback to be scraped`).toBe(false);
    }
  });

  test('stop_grace_period outlasts shutdown.drainDelay + shutdown.drainTimeout', () => {
    const stack = load();
    for (const [name, service] of meridianServices(stack)) {
      const { shutdown } = compiledFor(stack, service);
      expect(service.stop_grace_period, name).toBeDefined();
      expect(durationMs(service.stop_grace_period), name).toBeGreaterThan(shutdown.drainDelay + shutdown.drainTimeout);
    }
  });

  test('every Meridian reads its certificate and key from Swarm secrets that the stack declares and never holds, readable by the image\'s user', () => {
    const stack = load();
    for (const [name, service] of meridianServices(stack)) {
      const { tls } = compiledFor(stack, service);
      const mounted = mountsOf(service.secrets, '/run/secrets');
      expect(tls.certificates.length, `${name}: tls.certificates`).toBeGreaterThan(0);
      for (const pair of tls.certificates) {
        for (const file of [pair.cert, pair.key]) {
          const secret = mounted.find((m) => m.target === file);
          expect(secret, `${name}: ${file} is a mounted secret`).toBeDefined();
          // External: created with `docker secret create`, so no key material sits in this repository.
          expect(stack.secrets?.[secret!.source]?.external, `top-level secrets.${secret!.source} is external`).toBe(true);
          // Meridian runs as the image's user, not root: a secret only root may read stops it at start.
          const ref = (service.secrets as unknown[]).find((r) => (typeof r === 'string' ? r : (r as Doc).source) === secret!.source);
          expect(readableByImageUser(ref), `${name}: ${file} is readable by uid ${IMAGE_UID}`).toBe(true);
        }
      }
    }
  });

  test('geoipupdate runs on every node with its MaxMind credentials as secrets, into the volume each Meridian reads', () => {
    const stack = load();
    const updater = serviceOf(stack, 'geoipupdate');
    expect(updater.image).toMatch(/^ghcr\.io\/maxmind\/geoipupdate(:|@|$)/);
    // A named volume exists on one node only: every node that runs Meridian needs its own updater.
    expect(updater.deploy?.mode).toBe('global');
    const env = envOf(updater);
    const secrets = mountsOf(updater.secrets, '/run/secrets');
    for (const variable of ['GEOIPUPDATE_ACCOUNT_ID_FILE', 'GEOIPUPDATE_LICENSE_KEY_FILE']) {
      const secret = secrets.find((s) => s.target === env[variable]);
      expect(secret, `${variable}=${env[variable]} is a secret mounted in geoipupdate`).toBeDefined();
      expect(stack.secrets?.[secret!.source], `top-level secrets.${secret!.source}`).toBeTruthy();
    }
    for (const plain of ['GEOIPUPDATE_ACCOUNT_ID', 'GEOIPUPDATE_LICENSE_KEY']) expect(env[plain], `${plain} must not be in the environment`).toBeUndefined();
    const editions = (env.GEOIPUPDATE_EDITION_IDS ?? '').split(/\s+/).filter(Boolean);
    expect(editions).toContain('GeoLite2-City');
    expect(Number(env.GEOIPUPDATE_FREQUENCY), 'GEOIPUPDATE_FREQUENCY in hours; 0 or unset runs once and exits').toBeGreaterThan(0);

    const dbDir = env.GEOIPUPDATE_DB_DIR ?? '/usr/share/GeoIP';
    const written = volumesOf(updater).find((v) => v.target === dbDir);
    expect(written, `geoipupdate mounts a volume at ${dbDir}`).toMatchObject({ type: 'volume', readOnly: false });
    expect(Object.keys(stack.volumes ?? {})).toContain(written!.source);

    for (const [name, service] of meridianServices(stack)) {
      const { geo } = compiledFor(stack, service);
      expect(geo.databases, `${name}: geo.databases`).not.toBeNull();
      const mount = volumesOf(service).find((v) => v.source === written!.source);
      expect(mount, `${name} mounts the ${written!.source} volume`).toMatchObject({ type: 'volume', readOnly: true });
      expect([...geo.databases!].sort(), `${name}: geo.databases are the files geoipupdate writes`).toEqual(
        editions.map((edition) => posix.join(mount!.target, `${edition}.mmdb`)).sort(),
      );
    }
  });

  test("Prometheus scrapes exactly the eight admin addresses, by names the admin plane answers to, with alerts.yml beside it", () => {
    const stack = load();
    const prometheus = serviceOf(stack, 'prometheus');
    const file = configFile(stack, prometheus, PROMETHEUS_CONFIG_TARGET);
    const config = parse(readFileSync(file, 'utf8'));
    const job = (config.scrape_configs as Doc[]).find((c) => c.job_name === 'meridian');
    expect(job, 'scrape job meridian').toBeDefined();
    expect(job!.metrics_path ?? '/metrics').toBe('/metrics');
    const targets = (job!.static_configs as Doc[]).flatMap((sc) => (sc.targets as string[]).map((target) => ({ target, labels: sc.labels ?? {} })));

    // The admin address of each Meridian service in the stack, labelled with the zone it serves.
    const expected = meridianServices(stack).map(([name, service]) => {
      const { admin, topology } = compiledFor(stack, service);
      return { target: `${name}:${admin.port}`, labels: { self_region: topology.self.region, self_zone: topology.self.zone } };
    });
    expect(targets.map((t) => t.target).sort()).toEqual(expected.map((t) => t.target).sort());
    for (const want of expected) expect(targets.find((t) => t.target === want.target)?.labels, want.target).toMatchObject(want.labels);

    const allowed: string[] = rawMeridianConfig(stack).admin?.allowedHosts ?? [];
    for (const { target } of targets) {
      const host = target.slice(0, target.lastIndexOf(':'));
      expect(allowed.includes(host) || allowed.includes(target), `admin.allowedHosts lists ${host}, else the scrape gets 421`).toBe(true);
    }

    // rule_files are relative to the config file: each must be mounted beside it.
    const mounted = mountsOf(prometheus.configs, '/').map((m) => m.target);
    for (const rules of config.rule_files ?? []) expect(mounted, `rule file ${rules}`).toContain(posix.resolve(posix.dirname(PROMETHEUS_CONFIG_TARGET), rules));
  });
}

describe('the stack file as written', () => {
  stackChecks(fromFile);
});

if (!dockerAvailable()) {
  test('docker stack config accepts the stack', (ctx) => {
    const message = 'docker client not found: the Swarm stack was not validated by `docker stack config` (checked from the YAML only)';
    expect(process.env.CI, message).toBeFalsy();
    console.warn(message);
    ctx.skip(message);
  });
} else {
  describe('the stack as `docker stack config` reads it', () => {
    const docker = fromDocker();
    test('docker stack config accepts the stack', () => {
      expect(docker.status, docker.output).toBe(0);
      expect(Object.keys(docker.stack!.services).sort()).toEqual(Object.keys(fromFile().services).sort());
    });
    stackChecks(() => {
      expect(docker.status, docker.output).toBe(0);
      return docker.stack!;
    });
  });
}
