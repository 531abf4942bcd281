// `node bench/alloc-profile.ts [RATE] [SECONDS]`: where Meridian allocates per request. Meridian runs with the inspector
// on, the sampling heap profiler counts every sampled allocation (also those a scavenge frees soon after) while the
// paced generator sends small GETs, and the script prints the top allocation sites by bytes per request: by the
// allocating function, and by the nearest Meridian frame on its stack (what Meridian made node:http or undici do).
// The raw profile is written to bench/.tmp/alloc/meridian.heapprofile for Chrome DevTools.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBench } from './children.ts';
import { inspectorOf } from './inspector.ts';
import { startMeridian } from './meridian-process.ts';
import { paced } from './pacer-child.ts';
import { startNginxUpstream } from './targets.ts';

const TMP = fileURLToPath(new URL('./.tmp/alloc', import.meta.url));
const RATE = Number(process.argv[2] ?? 4000);
const SECONDS = Number(process.argv[3] ?? 10);
/** Bytes between samples: small enough for thousands of samples in a short window. */
const SAMPLING_INTERVAL = 8192;
const TOP = 25;
/** Frames shown per stack in the by-stack table: the allocating one and its callers. */
const STACK_DEPTH = 4;
const CLIENT_HEADERS = { 'x-forwarded-for': '81.2.69.142' };

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  callFrame: CallFrame;
  selfSize: number;
  children: ProfileNode[];
}

function isMeridian(frame: CallFrame): boolean {
  return /\/(src|dist)\/(?!.*node_modules)/.test(frame.url) && !frame.url.includes('node_modules');
}

function label(frame: CallFrame): string {
  const file = frame.url.replace(/^.*\/(node_modules\/|src\/|dist\/)/, '$1').replace(/^node:/, 'node:');
  return `${frame.functionName || '(anonymous)'} ${file || '(native)'}:${frame.lineNumber + 1}`;
}

/** Bytes by allocating frame, and by the nearest Meridian frame on the stack ('(no Meridian frame)' when none). */
function aggregate(head: ProfileNode): { bySite: Map<string, number>; byMeridian: Map<string, number>; byStack: Map<string, number>; total: number } {
  const bySite = new Map<string, number>();
  const byStack = new Map<string, number>();
  const byMeridian = new Map<string, number>();
  let total = 0;
  const walk = (node: ProfileNode, nearest: string, callers: readonly string[]): void => {
    const here = isMeridian(node.callFrame) ? label(node.callFrame) : nearest;
    const site = label(node.callFrame);
    if (node.selfSize > 0) {
      total += node.selfSize;
      bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize);
      byMeridian.set(here, (byMeridian.get(here) ?? 0) + node.selfSize);
      const stack = [site, ...callers.slice(0, STACK_DEPTH - 1)].join(' ← ');
      byStack.set(stack, (byStack.get(stack) ?? 0) + node.selfSize);
    }
    for (const child of node.children) walk(child, here, [site, ...callers]);
  };
  walk(head, '(no Meridian frame)', []);
  return { bySite, byMeridian, byStack, total };
}

function top(map: Map<string, number>, requests: number, total: number): string[] {
  return [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, TOP)
    .map(([site, bytes]) => `| ${(bytes / requests).toFixed(0)} | ${((bytes / total) * 100).toFixed(1)} % | \`${site}\` |`);
}

async function main(): Promise<number> {
  rmSync(TMP, { recursive: true, force: true });
  mkdirSync(TMP, { recursive: true });
  const upstream = await startNginxUpstream(TMP);
  const meridian = await startMeridian('Meridian (inspector)', upstream.url, TMP, { nodeFlags: ['--inspect=127.0.0.1:0'] });
  try {
    const load = { rate: RATE, connections: 50, headers: CLIENT_HEADERS };
    await paced(meridian.url, { ...load, durationS: 3 });
    const session = await inspectorOf(meridian.child);
    await session.send('HeapProfiler.enable');
    await session.send('HeapProfiler.startSampling', {
      samplingInterval: SAMPLING_INTERVAL,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
    const result = await paced(meridian.url, { ...load, durationS: SECONDS });
    const { profile } = await session.send('HeapProfiler.stopSampling');
    session.close();
    writeFileSync(join(TMP, 'meridian.heapprofile'), JSON.stringify(profile));
    // The sampling window is the load window plus the CDP round trips; the generator's count is close enough.
    const requests = result.completed;
    const { bySite, byMeridian, byStack, total } = aggregate(profile.head as ProfileNode);
    console.log(`${requests} requests at ${result.rps} req/s (p99 ${result.p99Ms} ms): about ${(total / requests).toFixed(0)} bytes of JS heap allocated per request\n`);
    console.log('### By allocating function\n\n| bytes/request | share | site |\n|---:|---:|---|');
    console.log(top(bySite, requests, total).join('\n'));
    console.log('\n### By the nearest Meridian frame on the stack\n\n| bytes/request | share | Meridian frame |\n|---:|---:|---|');
    console.log(top(byMeridian, requests, total).join('\n'));
    console.log('\n### By stack (the allocating function and its callers)\n\n| bytes/request | share | stack |\n|---:|---:|---|');
    console.log(top(byStack, requests, total).join('\n'));
    console.log(`\nraw profile: ${join(TMP, 'meridian.heapprofile')}`);
  } finally {
    await meridian.stop();
    await upstream.stop();
  }
  return 0;
}

runBench(main, TMP);
