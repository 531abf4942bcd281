// `node bench/ab.ts [ROUNDS] [SECONDS] [CLI…]`: A/B of hot-path changes on small GETs. Meridian builds (each a
// dist/cli/index.js; by default the current build) and the minimal node:http + undici proxy run side by side, pinned
// like bench/run.ts pins them, and take turns under the same load: ROUNDS rounds, each an autocannon and a wrk window
// of SECONDS per target (AB_WRK_ONLY=1: wrk alone, for more and shorter rounds). Each round prints every build's rate
// divided by the minimal proxy's in that round, and `cpu`: the minimal proxy's CPU time per request divided by the
// build's (user + system time of the process over its windows); the end prints the median of each over the rounds.
// On a shared 2-core VM single windows swing by ±25 %, and CPU per request swings with them (it rises when the core is
// shared), so only medians over many rounds mean anything, and a change of a few % stays below what this can resolve:
// bench/profile-compare.ts, which attributes CPU per request to functions, is the finer tool.
// AB_TOGETHER=1 loads every target at once on the proxy CPU instead; AB_STRACE=1 counts each target's syscalls.
// A second build to compare against: copy dist/ to DIR/dist and link DIR/{node_modules,geo-data,package.json} here.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, freePort, hasCommand, runBench, startChild, stopChild } from './children.ts';
import { waitFor200 } from './meridian-process.ts';
import { autocannon, wrk, type LoadResult } from './load.ts';
import * as t from './targets.ts';

const TMP = fileURLToPath(new URL('./.tmp/ab', import.meta.url));
const ROUNDS = Number(process.argv[2] ?? 3);
const SECONDS = Number(process.argv[3] ?? 8);
const CLIS = process.argv.length > 4 ? process.argv.slice(4) : [t.MERIDIAN_CLI];
const HEADERS = { 'x-forwarded-for': '81.2.69.142' };
const CONNECTIONS = 50;

async function startBuild(label: string, cli: string, upstreamUrl: string): Promise<t.Server> {
  const port = await freePort();
  const config = join(TMP, `${label}.yaml`);
  writeFileSync(config, t.meridianConfig(upstreamUrl, port));
  // AB_FLAGS_M1="--max-semi-space-size=16" (space-separated) runs build M1 with those node flags instead of the image's.
  const override = process.env[`AB_FLAGS_${label}`];
  const flags = override === undefined ? t.IMAGE_NODE_FLAGS : override.split(' ').filter((f) => f !== '');
  const child = startChild(label, process.execPath, [...flags, cli, 'start', '--config', config], { cpu: t.PROXY_CPU });
  const url = `http://127.0.0.1:${port}`;
  await waitFor200(child, url);
  return { url, child, stop: () => stopChild(child) };
}

async function main(): Promise<number> {
  rmSync(TMP, { recursive: true, force: true });
  mkdirSync(TMP, { recursive: true });
  const upstream = await t.startNginxUpstream(TMP);
  const minimal = await t.MINIMAL_DISPATCH.start(upstream, TMP);
  const builds: [string, t.Server][] = [];
  for (const [i, cli] of CLIS.entries()) builds.push([`M${i}`, await startBuild(`M${i}`, cli, upstream.url)]);
  const all: [string, t.Server][] = [['minimal', minimal], ...builds];
  const load = { connections: CONNECTIONS, durationS: SECONDS, cpu: t.LOAD_CPU, headers: HEADERS };
  for (const [, server] of all) await autocannon(server.url, { ...load, durationS: 3 });
  if (process.env.AB_STRACE) {
    // Syscalls per request for each target (strace slows it; the counts, not the rates, are the point).
    for (const [label, server] of all) {
      const trace = startChild('strace', 'strace', ['-c', '-f', '-p', String(server.child.proc.pid)], { keepOutput: true });
      await new Promise((resolve) => setTimeout(resolve, 500));
      const result = await autocannon(server.url, { ...load, durationS: 4 });
      trace.proc.kill('SIGINT');
      await trace.exited;
      console.log(`\n== ${label}: ${Math.round(result.rps * 4)} requests\n${trace.output()}`);
    }
    for (const [, server] of all) await server.stop();
    await upstream.stop();
    return 0;
  }
  if (process.env.AB_TOGETHER) {
    // All targets at once on the proxy CPU, each under its own wrk: the host's noise then hits every one alike, and
    // requests per CPU second compare builds directly.
    for (let round = 1; round <= ROUNDS; round++) {
      const before = all.map(([, server]) => cpuSeconds(server.child)!);
      const results = await Promise.all(all.map(([, server]) => wrk(server.url, load)));
      const perCpu = all.map(([, server], i) => (results[i].rps * SECONDS) / (cpuSeconds(server.child)! - before[i]));
      const line = builds.map(([label], i) => `${label} ÷ minimal ${(perCpu[i + 1] / perCpu[0]).toFixed(3)}`).join(' | ');
      const raw = all.map(([label], i) => `${label} ${Math.round(results[i].rps)} req/s ${Math.round(1e6 / perCpu[i])} µs/req`).join(', ');
      console.log(`round ${round}: ${line}   (${raw})`);
    }
    for (const [, server] of all) await server.stop();
    await upstream.stop();
    return 0;
  }
  const useWrk = hasCommand('wrk');
  /** autocannon can be left out (AB_WRK_ONLY=1) for more, shorter rounds: wrk loads the core harder and costs less. */
  const useAutocannon = !process.env.AB_WRK_ONLY;
  const ratios = new Map<string, number[]>();
  console.log(`builds: ${CLIS.map((cli, i) => `M${i}=${cli}`).join(' ')}`);
  for (let round = 1; round <= ROUNDS; round++) {
    const ac = new Map<string, LoadResult>();
    const wk = new Map<string, LoadResult>();
    /** CPU microseconds per request over both windows: unlike the rate, steady when other work takes the core. */
    const cpu = new Map<string, number>();
    // Alternate the order each round so no target always runs right after the same one.
    const order = round % 2 === 1 ? all : [...all].reverse();
    for (const [label, server] of order) {
      const before = cpuSeconds(server.child)!;
      if (useAutocannon) ac.set(label, await autocannon(server.url, load));
      if (useWrk) wk.set(label, await wrk(server.url, load));
      const requests = ((ac.get(label)?.rps ?? 0) + (wk.get(label)?.rps ?? 0)) * SECONDS;
      cpu.set(label, ((cpuSeconds(server.child)! - before) * 1e6) / requests);
    }
    const line = builds.map(([label]) => {
      const a = useAutocannon ? ac.get(label)!.rps / ac.get('minimal')!.rps : NaN;
      const w = useWrk ? ` wrk ${(wk.get(label)!.rps / wk.get('minimal')!.rps).toFixed(3)}` : '';
      const c = cpu.get('minimal')! / cpu.get(label)!;
      for (const [kind, value] of [['ac', a], ['wrk', useWrk ? wk.get(label)!.rps / wk.get('minimal')!.rps : NaN], ['cpu', c]] as const) {
        if (!Number.isNaN(value)) ratios.set(`${label} ${kind}`, [...(ratios.get(`${label} ${kind}`) ?? []), value]);
      }
      return `${label} ÷ minimal: ac ${a.toFixed(3)}${w} cpu ${c.toFixed(3)} (${cpu.get(label)!.toFixed(1)} µs/req)`;
    });
    const raw = all.map(([label]) => `${label} ${Math.round(ac.get(label)?.rps ?? 0)}/${Math.round(wk.get(label)?.rps ?? 0)}`).join(' ');
    console.log(`round ${round}: ${line.join(' | ')}   (${raw})`);
  }
  const median = (xs: number[]): number => [...xs].sort((p, q) => p - q)[xs.length >> 1];
  console.log(`medians over ${ROUNDS} rounds: ${[...ratios].map(([key, xs]) => `${key} ${median(xs).toFixed(3)}`).join(', ')}`);
  for (const [, server] of all) await server.stop();
  await upstream.stop();
  return 0;
}

runBench(main, TMP);
