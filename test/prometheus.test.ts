// Meridian's exposition and the files in deploy/prometheus pass promtool, and a real Prometheus server scrapes a
// test Meridian over its admin port: the series arrive, the alert rules evaluate (the certificate expiry rule matches
// a real certificate's series), and every dashboard query runs.
import { afterEach, describe, expect, test } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deadPort, send, startProxy, startUpstream, until, type Overrides, type RunningProxy, type Upstream } from './support/harness.ts';
import { makeCa, makeCertificate } from './support/certs.ts';
import { EDGE_STAT } from '../src/observe/edge-stats.ts';

const DEPLOY = fileURLToPath(new URL('../deploy/', import.meta.url));
const ALERTS = join(DEPLOY, 'prometheus/alerts.yml');
const DASHBOARD = join(DEPLOY, 'grafana/meridian-dashboard.json');
const PROMETHEUS_DEADLINE_MS = 30_000;

/** No skipping: without the binaries this suite fails, and says which package brings them. */
function requireCommand(name: string): void {
  if (spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0) return;
  const hint = process.env.CI ? '.ci/run should have installed it (apt_packages)' : 'install it with `apt-get install -y prometheus`';
  throw new Error(`${name} not found: it comes with the Debian package \`prometheus\`; ${hint}`);
}

function promtool(args: string[], input?: string): { status: number | null; output: string } {
  requireCommand('promtool');
  const result = spawnSync('promtool', args, { input, encoding: 'utf8', timeout: 20_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function upstream(handler: Parameters<typeof startUpstream>[0]): Promise<Upstream> {
  const started = await startUpstream(handler);
  cleanups.push(() => started.close());
  return started;
}

/**
 * Listeners with every edge series: plain HTTP (where the requests go), HTTPS serving an ECDSA and an RSA certificate
 * for one name (two expiry series) and another name's certificate that expires in 5 days, and a PROXY protocol listener.
 */
async function edgeListeners(): Promise<Overrides> {
  const dir = await mkdtemp(join(tmpdir(), 'meridian-prometheus-certs-'));
  // Cleanups run in reverse: the files go after Meridian has stopped watching them.
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const ca = makeCa(dir);
  const pairs = [
    makeCertificate(dir, { names: ['api.example.test'], ca }),
    makeCertificate(dir, { names: ['api.example.test'], ca, key: 'rsa' }),
    makeCertificate(dir, { names: ['soon.example.test'], ca, days: 5 }),
  ];
  return {
    listen: [
      { host: '127.0.0.1', port: 0 },
      { protocol: 'https', host: '127.0.0.1', port: 0 },
      { name: 'lb', host: '127.0.0.1', port: 0, proxyProtocol: { trusted: ['192.0.2.0/24'] } },
    ],
    tls: { certificates: pairs.map((pair) => ({ cert: pair.certFile, key: pair.keyFile })) },
  };
}

/**
 * Meridian whose first candidate refuses connections, so each request fails over once (never ejected here), with a
 * rate-limit rule the traffic never meets; two refusals by it and three redirects to fallback-1 are counted the way a
 * data-plane thread counts them, into its edge stats row.
 */
async function meridianWithTraffic(requests: number, listeners: Overrides = {}): Promise<RunningProxy> {
  const ok = await upstream((req, res) => res.writeHead(req.url === '/missing' ? 404 : 200).end('ok'));
  const proxy = await startProxy([`http://127.0.0.1:${await deadPort()}`, ok.origin], {
    outlierDetection: { consecutiveFailures: 1_000 },
    rateLimits: { rules: [{ name: 'sessions', pathPrefix: '/v1/account/sessions', rate: 5, burst: 10 }] },
    ...listeners,
  });
  cleanups.push(() => proxy.shutdown());
  for (let i = 0; i < requests; i++) expect((await send(proxy.port, { path: i === 0 ? '/missing' : '/' })).status).toBe(i === 0 ? 404 : 200);
  const { values } = proxy.meridian.runtime.edgeStats;
  values[EDGE_STAT.rateLimited] += 2;
  values[EDGE_STAT.redirected + 1] += 3;
  return proxy;
}

describe('promtool', () => {
  test('check metrics passes on the scraped exposition, edge series included', async () => {
    const proxy = await meridianWithTraffic(4, await edgeListeners());
    const { body } = await proxy.meridian.runtime.metrics.scrape();
    expect(body).toContain('meridian_failovers_total{from_region="local",to_region="fallback-1"}');
    for (const series of [
      'meridian_tls_handshakes_total{listener="https",result="resumed"} 0',
      'meridian_proxy_protocol_refused_total{listener="lb"} 0',
      'meridian_tls_certificate_expiry_timestamp_seconds{certificate="api.example.test (2)"}',
      'meridian_http_requests_by_protocol_total{protocol="http/1.1"} 4',
      'meridian_rate_limited_total{rule="sessions"} 2',
      'meridian_redirects_total{to_region="fallback-1"} 3',
      'meridian_endpoint_rtt_seconds{region="fallback-1",zone="az-1",endpoint="http://127.0.0.1:',
      // The boot probe of each endpoint, the refused one's included.
      'meridian_health_check_duration_seconds_bucket{le="+Inf",region="local",zone="az-1"} 1',
      'meridian_health_check_duration_seconds_count{region="fallback-1",zone="az-1"} 1',
    ]) {
      expect(body).toContain(series);
    }
    const result = promtool(['check', 'metrics'], body);
    expect(result.output).toBe('');
    expect(result.status).toBe(0);
  });

  test('check config, check rules and the rule unit tests pass on deploy/prometheus', () => {
    for (const args of [
      ['check', 'config', join(DEPLOY, 'prometheus/prometheus.yml')],
      ['check', 'rules', ALERTS],
      ['test', 'rules', join(DEPLOY, 'prometheus/alerts.test.yml')],
    ]) {
      const result = promtool(args);
      expect({ args, status: result.status }, result.output).toEqual({ args, status: 0 });
    }
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

interface RunningPrometheus {
  readonly url: string;
  query(expr: string): Promise<{ status: string; error?: string; data?: { result: { metric: Record<string, string>; value: [number, string] }[] } }>;
}

/** A Prometheus server on a free loopback port with a scratch data dir, stopped by PID when the test ends. */
async function startPrometheus(adminPort: number): Promise<RunningPrometheus> {
  requireCommand('prometheus');
  const dir = await mkdtemp(join(tmpdir(), 'meridian-prometheus-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const config = join(dir, 'prometheus.yml');
  await writeFile(
    config,
    [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      `rule_files: ['${ALERTS}']`,
      'scrape_configs:',
      '  - job_name: meridian',
      `    static_configs: [{ targets: ['127.0.0.1:${adminPort}'], labels: { self_region: local, self_zone: az-1 } }]`,
      '',
    ].join('\n'),
  );
  const port = await freePort();
  const child: ChildProcess = spawn(
    'prometheus',
    [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-4_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = once(child, 'exit');
  cleanups.push(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    process.kill(child.pid!, 'SIGTERM');
    const timer = setTimeout(() => child.exitCode === null && process.kill(child.pid!, 'SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  });
  const url = `http://127.0.0.1:${port}`;
  await until(
    async () => {
      if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}:\n${output}`);
      return (await fetch(`${url}/-/ready`).catch(() => null))?.ok;
    },
    `prometheus to be ready on ${url}`,
    PROMETHEUS_DEADLINE_MS,
    100,
  );
  return {
    url,
    query: async (expr) => (await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`)).json(),
  };
}

describe('a real Prometheus server', () => {
  test('scrapes Meridian, stores meridian_requests_total, evaluates the alert rules and runs the dashboard queries', { timeout: 90_000 }, async () => {
    const proxy = await meridianWithTraffic(6, await edgeListeners());
    const prometheus = await startPrometheus(proxy.adminPort);

    const stored = await until(
      async () => {
        const answer = await prometheus.query('meridian_requests_total{job="meridian"}');
        return answer.data?.result.length === 2 ? answer.data.result : undefined;
      },
      'meridian_requests_total in Prometheus',
      PROMETHEUS_DEADLINE_MS,
      200,
    );
    const byCode = Object.fromEntries(stored.map(({ metric, value }) => [`${metric.region}/${metric.code}`, Number(value[1])]));
    expect(byCode).toEqual({ 'fallback-1/2xx': 5, 'fallback-1/4xx': 1 });
    expect(stored[0].metric).toMatchObject({ self_region: 'local', self_zone: 'az-1', zone: 'az-1', method: 'GET' });
    expect((await prometheus.query('up{job="meridian"}')).data?.result.map((r) => r.value[1])).toEqual(['1']);
    const failovers = await prometheus.query('meridian_failovers_total');
    expect(failovers.data?.result.map((r) => [r.metric.from_region, r.metric.to_region, r.value[1]])).toEqual([['local', 'fallback-1', '6']]);

    // Every rule must have been evaluated without an error against real series.
    const rules = await until(
      async () => {
        const answer = (await (await fetch(`${prometheus.url}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] } };
        const all = answer.data.groups.flatMap((g) => g.rules);
        return all.length > 0 && all.every((r) => r.health !== 'unknown') ? all : undefined;
      },
      'every alert rule to be evaluated',
      PROMETHEUS_DEADLINE_MS,
      200,
    );
    expect(rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.lastError}`)).toEqual([]);
    expect(rules).toHaveLength(9);
    // The certificate made for 5 days matches the expiry rule at once, and waits out its `for` as pending.
    const expiring = await until(
      async () => {
        const answer = (await (await fetch(`${prometheus.url}/api/v1/alerts`)).json()) as { data: { alerts: { labels: Record<string, string>; state: string }[] } };
        const alerts = answer.data.alerts.filter((a) => a.labels.alertname === 'MeridianCertificateExpiresSoon');
        return alerts.length > 0 ? alerts : undefined;
      },
      'the certificate expiry alert',
      PROMETHEUS_DEADLINE_MS,
      200,
    );
    expect(expiring.map((a) => [a.labels.certificate, a.state])).toEqual([['soon.example.test', 'pending']]);

    const dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as { panels: { title: string; targets?: { expr: string }[] }[] };
    const queries = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
    expect(queries.length).toBeGreaterThan(20);
    const concrete = (expr: string): string => expr.replaceAll('$instance', '.*').replaceAll('$__rate_interval', '1m').replaceAll('$__range', '5m');
    for (const { panel, expr } of queries) {
      const answer = await prometheus.query(concrete(expr));
      expect({ panel, expr, status: answer.status, error: answer.error }).toEqual({ panel, expr, status: 'success', error: undefined });
    }
    // The panels of the per-region latency, latency order, rate-limit, redirect and misroute series find them (once two scrapes give rate() its samples).
    const found = [
      'Probe RTT by region, from each instance region',
      'Health check duration p50 / p99 by region',
      'Rate-limited requests/s by rule',
      'Redirects/s by target region',
      'Misroutes/s by reason',
      'Misroute extra distance (km), misroutes per bucket (range)',
      'Latency order: cost terms by region (slowness, errors)',
      'Latency order: client areas moved, by the region that won them',
    ];
    for (const { panel, expr } of queries.filter((q) => found.includes(q.panel))) {
      await until(async () => ((await prometheus.query(concrete(expr))).data?.result.length ?? 0) > 0, `a series for ${panel}: ${expr}`, PROMETHEUS_DEADLINE_MS, 200);
    }
    expect(new Set(queries.filter((q) => found.includes(q.panel)).map((q) => q.panel)).size).toBe(found.length);
  });
});
