// `node bench/cpu-profile.ts [SECONDS]`: where Meridian spends its CPU on small GETs. Meridian (the build, one data-plane
// thread, pinned to the proxy CPU) is profiled by V8's sampling CPU profiler over the inspector for the measured window
// only (not start-up, not the warm-up) while autocannon saturates it, and the script prints self time by file and by
// function, Meridian's own files apart from node's and undici's. The raw profile is written to bench/.tmp/cpu/ for
// Chrome DevTools.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBench, runChild } from './children.ts';
import { inspectorOf } from './inspector.ts';
import { startMeridian } from './meridian-process.ts';
import { IMAGE_NODE_FLAGS, LOAD_CPU, startNginxUpstream } from './targets.ts';

const TMP = fileURLToPath(new URL('./.tmp/cpu', import.meta.url));
const SECONDS = Number(process.argv[2] ?? 10);
const TOP = 30;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a frame's code lives: Meridian's build, undici, node's internals, or V8/native work (GC, the program). */
function area(url: string): string {
  if (url.includes('/dist/')) return url.slice(url.indexOf('/dist/') + 6);
  if (url.includes('node_modules/undici')) return 'undici';
  if (url.startsWith('node:')) return url;
  return url === '' ? '(native)' : url.replace(/^.*node_modules\//, '');
}

function table(title: string, totals: Map<string, number>, all: number): void {
  console.log(`\n${title}`);
  for (const [name, us] of [...totals].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
    console.log(`${((100 * us) / all).toFixed(1).padStart(5)} %  ${name}`);
  }
}

async function main(): Promise<number> {
  rmSync(TMP, { recursive: true, force: true });
  mkdirSync(TMP, { recursive: true });
  const upstream = await startNginxUpstream(TMP);
  const meridian = await startMeridian('Meridian', upstream.url, TMP, {
    nodeFlags: [...IMAGE_NODE_FLAGS, '--inspect=127.0.0.1:0'],
  });
  const load = (seconds: number) =>
    runChild(
      'autocannon',
      'taskset',
      ['-c', String(LOAD_CPU), process.execPath, join(fileURLToPath(new URL('..', import.meta.url)), 'node_modules/autocannon/autocannon.js'),
        '-c', '50', '-d', String(seconds), '-H', 'x-forwarded-for=81.2.69.142', meridian.url],
      (seconds + 30) * 1000,
    );
  let profile: Profile;
  try {
    await load(2);
    const session = await inspectorOf(meridian.child);
    await session.send('Profiler.enable');
    await session.send('Profiler.setSamplingInterval', { interval: 250 });
    await session.send('Profiler.start');
    console.log((await load(SECONDS)).split('\n').filter((l) => /Req\/Sec|requests in/.test(l)).join('\n'));
    profile = (await session.send('Profiler.stop')).profile as Profile;
    session.close();
  } finally {
    await meridian.stop();
    await upstream.stop();
  }
  const file = join(TMP, 'meridian.cpuprofile');
  writeFileSync(file, JSON.stringify(profile));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) self.set(profile.samples[i]!, (self.get(profile.samples[i]!) ?? 0) + profile.timeDeltas[i]!);
  let all = 0;
  for (const [id, us] of self) if (byId.get(id)!.callFrame.functionName !== '(idle)') all += us;
  const byFunction = new Map<string, number>();
  const byArea = new Map<string, number>();
  for (const [id, us] of self) {
    const frame = byId.get(id)!.callFrame;
    if (frame.functionName === '(idle)') continue;
    const where = area(frame.url);
    const fn = `${frame.functionName || '(anonymous)'}  ${where}:${frame.lineNumber + 1}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
    byArea.set(where, (byArea.get(where) ?? 0) + us);
  }
  console.log(`\nprofile: ${file}, ${(all / 1e6).toFixed(2)} s busy`);
  table('self time by file', byArea, all);
  table('self time by function', byFunction, all);
  return 0;
}

runBench(main, TMP);
