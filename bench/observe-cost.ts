// What observability costs: Meridian with no observers subscribed (plain), with the default metrics and traffic
// summary, and with the access log on as well (to /dev/null), interleaved over rounds; prints req/s and ratios.
// Run as `node bench/observe-cost.ts`; BENCH_DURATION (s, default 8) and BENCH_ROUNDS (default 2) tune it.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, openSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CAN_PIN, freePort, killAllChildren } from './children.ts';
import { autocannon, type LoadResult } from './load.ts';
import { describeEnvironment, environmentLines } from './machine.ts';
import { HAS_NGINX, LOAD_CPU, PROXY_CPU, startNginxUpstream, startNodeUpstream, type Server } from './targets.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TMP = join(ROOT, 'bench/.tmp/observe-cost');
const DURATION_S = Number(process.env.BENCH_DURATION ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const WARMUP_S = 2;
const CONNECTIONS = 20;
const READY_TIMEOUT_MS = 20_000;
/** Meridian trusts loopback, so it locates and routes this London address: the geo phase does real work. */
const CLIENT_HEADERS = { 'x-forwarded-for': '81.2.69.142' };

type Mode = 'plain' | 'metrics' | 'metrics + access log';
const MODES: readonly Mode[] = ['plain', 'metrics', 'metrics + access log'];

/** Child mode: `node bench/observe-cost.ts serve CONFIG plain|observed`. */
async function serve(configPath: string, observers: string): Promise<void> {
  const { loadConfigFile } = await import('../src/config/load.ts');
  const { startMeridian } = await import('../src/main.ts');
  const meridian = await startMeridian(await loadConfigFile(configPath));
  if (observers === 'plain') {
    // Nobody subscribed: the data plane's `hasSubscribers` checks skip publishing altogether.
    meridian.recorder?.close();
    meridian.runtime.metrics.close();
  }
  await once(process, 'SIGTERM');
  await meridian.shutdown();
}

interface Meridian {
  readonly url: string;
  readonly adminUrl: string;
  stop(): Promise<void>;
}

async function startMeridian(mode: Mode, upstream: Server): Promise<Meridian> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const config = join(TMP, 'meridian.yaml');
  writeFileSync(
    config,
    [
      'self: { region: bench, zone: z1 }',
      `listen: { host: 127.0.0.1, port: ${port} }`,
      `admin: { host: 127.0.0.1, port: ${adminPort} }`,
      'geo: { trustedProxies: [127.0.0.1/32] }',
      'regions:',
      '  bench:',
      '    location: [51.5, -0.1]',
      '    zones:',
      `      z1: { endpoints: ["${upstream.url}"] }`,
      `accessLog: { mode: ${mode === 'metrics + access log' ? 'on' : 'off'} }`,
      'shutdown: { drainDelay: 0, drainTimeout: 2s }',
      '',
    ].join('\n'),
  );
  // stdout is /dev/null itself, not a pipe we drain: the log costs the proxy its writes and nothing in this process.
  const devNull = openSync('/dev/null', 'w');
  const args = [join(ROOT, 'bench/observe-cost.ts'), 'serve', config, mode === 'plain' ? 'plain' : 'observed'];
  const child: ChildProcess = CAN_PIN
    ? spawn('taskset', ['-c', String(PROXY_CPU), process.execPath, ...args], { cwd: ROOT, stdio: ['ignore', devNull, 'pipe'] })
    : spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', devNull, 'pipe'] });
  closeSync(devNull);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-4_000)));
  const exited = once(child, 'exit');
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    process.kill(child.pid!, 'SIGTERM');
    const timer = setTimeout(() => child.exitCode === null && process.kill(child.pid!, 'SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    if ((await fetch(`${url}/`).catch(() => null))?.ok) return { url, adminUrl: `http://127.0.0.1:${adminPort}`, stop };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await stop();
  throw new Error(`Meridian (${mode}) did not answer on ${url}:\n${stderr}`);
}

/** The requests Meridian's own metrics counted, to show the observers really observed (0 when unsubscribed). */
async function countedRequests(adminUrl: string): Promise<number> {
  const body = await (await fetch(`${adminUrl}/metrics`)).text();
  let total = 0;
  for (const match of body.matchAll(/^meridian_requests_total\{[^}]*\} (\S+)$/gm)) total += Number(match[1]);
  return total;
}

async function measure(mode: Mode, upstream: Server): Promise<{ result: LoadResult; counted: number }> {
  const meridian = await startMeridian(mode, upstream);
  try {
    const url = `${meridian.url}/v1/health/version`;
    await autocannon(url, { connections: CONNECTIONS, durationS: WARMUP_S, cpu: LOAD_CPU, headers: CLIENT_HEADERS });
    const result = await autocannon(url, { connections: CONNECTIONS, durationS: DURATION_S, cpu: LOAD_CPU, headers: CLIENT_HEADERS });
    return { result, counted: await countedRequests(meridian.adminUrl) };
  } finally {
    await meridian.stop();
  }
}

async function main(): Promise<void> {
  rmSync(TMP, { recursive: true, force: true });
  mkdirSync(TMP, { recursive: true });
  const env = describeEnvironment();
  console.log(environmentLines(env).join('\n'));
  const upstream = HAS_NGINX ? await startNginxUpstream(TMP) : await startNodeUpstream();
  const runs = new Map<Mode, LoadResult[]>(MODES.map((mode) => [mode, []]));
  try {
    // Interleaved, so drift on a shared machine spreads over every mode instead of landing on one.
    for (let round = 1; round <= ROUNDS; round++) {
      for (const mode of MODES) {
        const { result, counted } = await measure(mode, upstream);
        runs.get(mode)!.push(result);
        console.log(
          `round ${round} ${mode.padEnd(21)} ${Math.round(result.rps).toLocaleString('en-US').padStart(7)} req/s  p99 ${result.p99Ms} ms  errors ${result.errors}  ` +
            `requests in meridian_requests_total: ${counted.toLocaleString('en-US')}`,
        );
      }
    }
  } finally {
    await upstream.stop();
  }
  const mean = (mode: Mode): number => runs.get(mode)!.reduce((sum, r) => sum + r.rps, 0) / ROUNDS;
  const plain = mean('plain');
  console.log(
    [
      '',
      `### Observability cost: GET through Meridian, ${CONNECTIONS} connections, ${DURATION_S} s × ${ROUNDS} rounds (autocannon), ${HAS_NGINX ? 'nginx' : 'node:http'} upstream`,
      '',
      '| Meridian with | req/s (mean) | vs plain |',
      '|---|---|---|',
      ...MODES.map((mode) => `| ${mode} | ${Math.round(mean(mode)).toLocaleString('en-US')} | ${(mean(mode) / plain).toFixed(3)} |`),
      '',
    ].join('\n'),
  );
  rmSync(TMP, { recursive: true, force: true });
}

if (process.argv[2] === 'serve') {
  await serve(process.argv[3], process.argv[4]);
} else {
  process.once('exit', killAllChildren);
  process.once('SIGINT', () => process.exit(130));
  await main();
}
