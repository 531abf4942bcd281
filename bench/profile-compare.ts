// `node bench/profile-compare.ts [SECONDS]`: where Meridian's CPU per request goes beyond the minimal node:http + undici
// proxy's. Both run (the build, pinned like bench/run.ts) under the same saturating autocannon load, one after the
// other, profiled over the inspector; the script prints CPU microseconds per request by file and by function for each,
// and the functions whose cost per request differs most. Microseconds per request, not shares of a busy core, are what
// compare: the two serve different rates.
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
const SECONDS = Number(process.argv[2] ?? 8);
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

/** CPU microseconds per request by function and by file. */
async function profileOf(server: Server, label: string): Promise<{ byFn: Map<string, number>; byArea: Map<string, number>; perReq: number }> {
  const load = { connections: 50, durationS: SECONDS, cpu: LOAD_CPU, headers: { 'x-forwarded-for': '81.2.69.142' } };
  await autocannon(server.url, { ...load, durationS: 2 });
  const session = await inspectorOf(server.child);
  await session.send('Profiler.enable');
  await session.send('Profiler.setSamplingInterval', { interval: 250 });
  await session.send('Profiler.start');
  const result = await autocannon(server.url, load);
  const profile = (await session.send('Profiler.stop')).profile as Profile;
  session.close();
  writeFileSync(join(TMP, `${label}.cpuprofile`), JSON.stringify(profile));
  const requests = result.rps * SECONDS;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const byFn = new Map<string, number>();
  const byArea = new Map<string, number>();
  let busy = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const frame = byId.get(profile.samples[i]!)!.callFrame;
    if (frame.functionName === '(idle)') continue;
    const us = profile.timeDeltas[i]! / requests;
    busy += us;
    const fn = `${frame.functionName || '(anonymous)'}  ${area(frame.url)}:${frame.lineNumber + 1}`;
    byFn.set(fn, (byFn.get(fn) ?? 0) + us);
    byArea.set(area(frame.url), (byArea.get(area(frame.url)) ?? 0) + us);
  }
  console.log(`${label}: ${Math.round(result.rps)} req/s, ${busy.toFixed(1)} µs CPU per request`);
  return { byFn, byArea, perReq: busy };
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
  try {
    const m = await profileOf(meridian, 'meridian');
    const n = await profileOf({ url: minimalUrl, child, stop: async () => {} }, 'minimal');
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
