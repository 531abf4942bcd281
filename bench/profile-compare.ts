// `node bench/profile-compare.ts [SECONDS] [ROUNDS]`: where Meridian's CPU per request goes beyond the minimal node:http
// + undici proxy's. Both run (the build, pinned like bench/run.ts) under the same saturating autocannon load, in turn
// for ROUNDS windows of SECONDS each, profiled over the inspector; the script prints the CPU microseconds per request
// by file and by function whose difference is largest. Microseconds per request, not shares of a busy core, are what
// compare: the two serve different rates. The raw profiles go to bench/.tmp/profile-compare/ for Chrome DevTools.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, runBench, startChild } from './children.ts';
import { inspectorOf } from './inspector.ts';
import { startMeridian, waitFor200 } from './meridian-process.ts';
import { autocannon } from './load.ts';
import { IMAGE_NODE_FLAGS, LOAD_CPU, PROXY_CPU, startNginxUpstream, type Server } from './targets.ts';

const TMP = fileURLToPath(new URL('./.tmp/profile-compare', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECONDS = Number(process.argv[2] ?? 4);
/** Windows per side, taken in turn. */
const ROUNDS = Number(process.argv[3] ?? 4);
const TOP = Number(process.env.TOP ?? 35);
/**
 * Node flags for each side, space-separated: `MERIDIAN_FLAGS` replaces the image's (IMAGE_NODE_FLAGS), `MINIMAL_FLAGS`
 * is empty by default, as in bench/run.ts. Giving both the same flags tells the flags' share of the gap from the code's.
 */
const flags = (name: string, fallback: readonly string[]): string[] => (process.env[name] ?? fallback.join(' ')).split(' ').filter((f) => f !== '');
const MERIDIAN_FLAGS = flags('MERIDIAN_FLAGS', IMAGE_NODE_FLAGS);
const MINIMAL_FLAGS = flags('MINIMAL_FLAGS', []);

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function area(url: string): string {
  if (url.includes('/dist/')) return url.slice(url.indexOf('/dist/') + 6);
  if (url.includes('node_modules/undici')) return 'undici';
  if (url.startsWith('node:')) return url;
  return url === '' ? '(native)' : url.replace(/^.*node_modules\//, '');
}

interface Tally {
  readonly byFn: Map<string, number>;
  readonly byArea: Map<string, number>;
  /** Sampled CPU microseconds (idle excluded) and requests served, over every window so far. */
  busyUs: number;
  requests: number;
}

const LOAD = { connections: 50, cpu: LOAD_CPU, headers: { 'x-forwarded-for': '81.2.69.142' } };

/** One profiled window of SECONDS under autocannon, its samples added to `tally` (in microseconds, per request at the end). */
async function profileWindow(server: Server, tally: Tally, label: string, round: number): Promise<void> {
  const session = await inspectorOf(server.child);
  await session.send('Profiler.enable');
  await session.send('Profiler.setSamplingInterval', { interval: 250 });
  await session.send('Profiler.start');
  const result = await autocannon(server.url, { ...LOAD, durationS: SECONDS });
  const profile = (await session.send('Profiler.stop')).profile as Profile;
  session.close();
  writeFileSync(join(TMP, `${label}-${round}.cpuprofile`), JSON.stringify(profile));
  tally.requests += result.rps * SECONDS;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  for (let i = 0; i < profile.samples.length; i++) {
    const frame = byId.get(profile.samples[i]!)!.callFrame;
    if (frame.functionName === '(idle)') continue;
    const us = profile.timeDeltas[i]!;
    tally.busyUs += us;
    const fn = `${frame.functionName || '(anonymous)'}  ${area(frame.url)}:${frame.lineNumber + 1}`;
    tally.byFn.set(fn, (tally.byFn.get(fn) ?? 0) + us);
    tally.byArea.set(area(frame.url), (tally.byArea.get(area(frame.url)) ?? 0) + us);
  }
}

/** The tally's sums turned into microseconds per request. */
function perRequest(tally: Tally): Tally {
  const scale = (m: Map<string, number>) => new Map([...m].map(([k, us]) => [k, us / tally.requests] as const));
  return { byFn: scale(tally.byFn), byArea: scale(tally.byArea), busyUs: tally.busyUs / tally.requests, requests: tally.requests };
}

function top(title: string, m: Map<string, number>): void {
  console.log(`\n${title}`);
  for (const [name, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(`${us.toFixed(2).padStart(7)} µs  ${name}`);
}

function diff(title: string, a: Map<string, number>, b: Map<string, number>): void {
  const keys = new Set([...a.keys(), ...b.keys()]);
  const rows = [...keys].map((k) => [k, (a.get(k) ?? 0) - (b.get(k) ?? 0), a.get(k) ?? 0, b.get(k) ?? 0] as const);
  console.log(`\n${title} (Meridian − minimal, µs per request; Meridian, minimal)`);
  for (const [k, d, x, y] of rows.sort((p, q) => Math.abs(q[1]) - Math.abs(p[1])).slice(0, TOP)) {
    console.log(`${d.toFixed(2).padStart(7)}  ${x.toFixed(2).padStart(6)} ${y.toFixed(2).padStart(6)}  ${k}`);
  }
}

async function main(): Promise<number> {
  rmSync(TMP, { recursive: true, force: true });
  mkdirSync(TMP, { recursive: true });
  const upstream = await startNginxUpstream(TMP);
  const port = await freePort();
  const child = startChild('minimal', process.execPath, [...MINIMAL_FLAGS, '--inspect=127.0.0.1:0', join(ROOT, 'bench/peers/minimal-dispatch.ts'), String(port), upstream.url], {
    cpu: PROXY_CPU,
    cwd: ROOT,
    keepOutput: true,
  });
  const minimalUrl = `http://127.0.0.1:${port}`;
  await waitFor200(child, minimalUrl);
  const meridian = await startMeridian('Meridian', upstream.url, TMP, { nodeFlags: [...MERIDIAN_FLAGS, '--inspect=127.0.0.1:0'] });
  console.log(`node flags: Meridian ${MERIDIAN_FLAGS.join(' ') || 'none'}; minimal ${MINIMAL_FLAGS.join(' ') || 'none'}`);
  const minimal: Server = { url: minimalUrl, child, stop: async () => {} };
  try {
    for (const server of [meridian, minimal]) await autocannon(server.url, { ...LOAD, durationS: 2 });
    // Short windows taken in turn, so a busy moment on the machine lands on both sides rather than on one.
    const tallies = [meridian, minimal].map((): Tally => ({ byFn: new Map(), byArea: new Map(), busyUs: 0, requests: 0 }));
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? [0, 1] : [1, 0];
      for (const i of order) await profileWindow(i === 0 ? meridian : minimal, tallies[i], i === 0 ? 'meridian' : 'minimal', round);
    }
    const [m, n] = tallies.map(perRequest);
    console.log(`Meridian: ${Math.round(m.requests / (ROUNDS * SECONDS))} req/s, ${m.busyUs.toFixed(1)} µs CPU per request`);
    console.log(`minimal: ${Math.round(n.requests / (ROUNDS * SECONDS))} req/s, ${n.busyUs.toFixed(1)} µs CPU per request`);
    console.log(`minimal ÷ Meridian CPU per request: ${(n.busyUs / m.busyUs).toFixed(3)}`);
    diff('by file', m.byArea, n.byArea);
    diff('by function', m.byFn, n.byFn);
    if (process.env.FULL) {
      top('Meridian by function', m.byFn);
      top('minimal by function', n.byFn);
    }
  } finally {
    await meridian.stop();
    child.proc.kill('SIGTERM');
    await child.exited;
    await upstream.stop();
  }
  return 0;
}

runBench(main, TMP);
