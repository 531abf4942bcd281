// `npm run bench:paced`: added latency at half of Meridian's saturation rate, evenly paced (bench/pacer.ts), for a
// direct connection, Meridian and nginx in one run; and Meridian's garbage collection over the same window, with V8's
// default young generation and with the one Meridian ships (see YOUNG_GENERATION below). Prints the tables and
// rewrites the "Paced latency" and "GC and the young generation" sections of bench/RESULTS.md.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, hasCommand, rssMiB, runBench, type Child } from './children.ts';
import { summarizeGc, type GcSummary } from './gc-trace.ts';
import { autocannon, wrk, type LoadResult } from './load.ts';
import { describeEnvironment, environmentLines } from './machine.ts';
import { startMeridian } from './meridian-process.ts';
import type { PacedResult } from './pacer.ts';
import { paced, type PacedRun } from './pacer-child.ts';
import * as t from './targets.ts';

const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
const TMP = join(BENCH_DIR, '.tmp', 'paced');
const RESULTS = join(BENCH_DIR, 'RESULTS.md');

const DURATION_S = Number(process.env.PACED_DURATION ?? 15);
const WARMUP_S = 3;
const SATURATION_S = 5;
const CONNECTIONS = 50;
/** Meridian's variants are measured this many times, alternating, so a burst of other work on the machine hits one row rather than one variant. */
const ROUNDS = Number(process.env.PACED_ROUNDS ?? 2);
const GOAL_ADDED_P99_MS = 2;
/**
 * This script takes this nice value at start, and every process it starts (upstream, targets, load generators)
 * inherits it, the same for all: other work on a shared machine then takes less of their cores. PACED_NICE=0 leaves
 * it as it is; a negative value needs root, without which the run goes on at the usual priority.
 */
const NICE = Number(process.env.PACED_NICE ?? -10);
const CLIENT_HEADERS = { 'x-forwarded-for': '81.2.69.142' };

/**
 * Meridian's GC settings as shipped, against V8's defaults in the same run: the image starts node with a 32 MiB
 * semi-space (worker threads get the same from src/control/supervisor.ts), and `meridian start` turns parallel
 * scavenging off unless node was given `--parallel-scavenge` explicitly, which is how the default row gets it back.
 */
const SHIPPED_GC_FLAGS = ['--max-semi-space-size=32'];
const V8_DEFAULT_GC_FLAGS = ['--parallel-scavenge'];

interface Variant {
  readonly name: string;
  readonly flags: readonly string[];
}

/** `PACED_VARIANTS="name=--flag --flag;name2="` compares other Meridian flag sets (exploration only). */
function variants(): Variant[] {
  const spec = process.env.PACED_VARIANTS;
  const once: Variant[] =
    spec === undefined
      ? [
          { name: 'as shipped', flags: SHIPPED_GC_FLAGS },
          { name: 'V8 default', flags: V8_DEFAULT_GC_FLAGS },
        ]
      : spec.split(';').map((part) => {
          const eq = part.indexOf('=');
          return eq < 0 ? { name: part, flags: [] } : { name: part.slice(0, eq), flags: part.slice(eq + 1).split(' ').filter(Boolean) };
        });
  return Array.from({ length: ROUNDS }, (_, round) => once.map((v) => (round === 0 ? v : { ...v, name: `${v.name}, round ${round + 1}` }))).flat();
}

interface Row {
  readonly name: string;
  /** Meridian only: the variant and its node flags, for the GC table. */
  readonly gcLabel?: string;
  readonly result?: PacedResult;
  readonly cpuPercent?: number | null;
  /**
   * How long the target's main thread waited, runnable, for a CPU over the window (ms): time the kernel gave to other
   * processes on its core. Well above the GC pause total, the tail is the machine's, not the target's.
   */
  readonly runQueueWaitMs?: number | null;
  readonly gc?: GcSummary;
  /** Meridian only: saturated requests per second (wrk or autocannon) just before the paced run, same process. */
  readonly saturated?: LoadResult;
  /** Meridian only: peak resident set size of the process over its life (saturation included), MiB. */
  readonly rssPeakMiB?: number | null;
  readonly failure?: string;
}

async function main(): Promise<number> {
  if (!Number.isFinite(DURATION_S) || DURATION_S < 1) throw new Error('PACED_DURATION must be a number of seconds ≥ 1');
  if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error('PACED_ROUNDS must be a whole number ≥ 1');
  rmSync(TMP, { recursive: true, force: true });
  mkdirSync(TMP, { recursive: true });
  let nice = 0;
  try {
    if (NICE !== 0) setPriority(NICE);
    nice = NICE;
  } catch (err) {
    console.log(`warning: cannot take nice ${NICE} (${(err as Error).message}); running at the usual priority`);
  }
  const env = describeEnvironment();
  console.log(environmentLines(env).join('\n'));
  const upstream = await (t.HAS_NGINX ? t.startNginxUpstream(TMP) : t.startNodeUpstream());
  const meridianRows: Row[] = [];
  const rows: Row[] = [];
  let rate = 0;
  try {
    const all = variants();
    // The first variant (as shipped) is "Meridian" in the latency table, and its saturation sets the rate for everyone.
    for (const [i, variant] of all.entries()) {
      process.stdout.write(`Meridian, ${variant.name} … `);
      const row = await measureMeridian(variant, i === 0, upstream, () => rate, (saturated) => {
        if (i === 0) rate = Math.round(saturated / 2);
      });
      meridianRows.push(row);
      console.log(describe(row));
    }
    if (rate === 0) throw new Error('Meridian was not measured at saturation; no rate to run at');
    for (const target of [t.DIRECT, ...(t.HAS_NGINX ? [t.NGINX_PROXY] : [])]) {
      process.stdout.write(`${target.name} … `);
      const row = await measureTarget(target, upstream, rate);
      rows.push(row);
      console.log(describe(row));
    }
  } finally {
    await upstream.stop();
  }
  const direct = rows.find((r) => r.name === t.DIRECT.name);
  const table = [direct, meridianRows[0], ...rows.filter((r) => r !== direct), ...meridianRows.slice(1)].filter((r) => r !== undefined);
  const latency = latencySection(env, rate, table, nice);
  const gc = gcSection(rate, meridianRows);
  console.log(`\n${latency}\n${gc}`);
  writeSections([latency, gc]);
  console.log(`wrote ${RESULTS}`);
  rmSync(TMP, { recursive: true, force: true });
  return [...rows, ...meridianRows].some((r) => r.failure !== undefined) ? 1 : 0;
}

const HAS_WRK = hasCommand('wrk');

function saturate(url: string): Promise<LoadResult> {
  const load = { connections: CONNECTIONS, durationS: SATURATION_S, cpu: t.LOAD_CPU, headers: CLIENT_HEADERS };
  return HAS_WRK ? wrk(url, load) : autocannon(url, load);
}

function pacedRun(rate: number): PacedRun {
  return { rate, connections: CONNECTIONS, durationS: DURATION_S, headers: CLIENT_HEADERS };
}

/** A fresh Meridian with GC tracing and `variant`'s flags: saturate it, warm it at the rate, then measure. */
async function measureMeridian(variant: Variant, primary: boolean, upstream: t.Server, rate: () => number, onSaturated: (rps: number) => void): Promise<Row> {
  let server: t.Server | undefined;
  const name = primary ? 'Meridian' : `Meridian, ${variant.name}`;
  const gcLabel = `${variant.name} (${variant.flags.join(' ') || 'no flags'})`;
  try {
    server = await startMeridian(name, upstream.url, TMP, { nodeFlags: ['--trace-gc-nvp', ...variant.flags] });
    const saturated = await saturate(server.url);
    onSaturated(saturated.rps);
    await paced(server.url, { ...pacedRun(rate()), durationS: WARMUP_S });
    const before = server.child.output().length;
    const [cpuBefore, waitBefore, startedAt] = [cpuSeconds(server.child), runQueueWait(server.child), performance.now()];
    const result = await paced(server.url, pacedRun(rate()));
    const cpuPercent = percent(cpuBefore, cpuSeconds(server.child), startedAt);
    const runQueueWaitMs = difference(waitBefore, runQueueWait(server.child));
    const gc = summarizeGc(server.child.output().slice(before));
    return { name, gcLabel, result, cpuPercent, runQueueWaitMs, gc, saturated, rssPeakMiB: rssMiB(server.child, 'peak') };
  } catch (err) {
    console.log(`failed: ${(err as Error).message}`);
    return { name, gcLabel, failure: (err as Error).message.split('\n')[0] };
  } finally {
    await server?.stop();
  }
}

async function measureTarget(target: t.Target, upstream: t.Server, rate: number): Promise<Row> {
  const dir = join(TMP, target.name.replace(/[^a-z0-9]+/gi, '-'));
  mkdirSync(dir, { recursive: true });
  let server: t.Server | undefined;
  try {
    server = await target.start(upstream, dir);
    await paced(server.url, { ...pacedRun(rate), durationS: WARMUP_S });
    const [cpuBefore, waitBefore, startedAt] = [cpuSeconds(server.child), runQueueWait(server.child), performance.now()];
    const result = await paced(server.url, pacedRun(rate));
    const runQueueWaitMs = difference(waitBefore, runQueueWait(server.child));
    return { name: target.name, result, cpuPercent: percent(cpuBefore, cpuSeconds(server.child), startedAt), runQueueWaitMs };
  } catch (err) {
    console.log(`failed: ${(err as Error).message}`);
    return { name: target.name, failure: (err as Error).message.split('\n')[0] };
  } finally {
    await server?.stop();
  }
}

/** The main thread's time waiting on a run queue so far (ms), from /proc/PID/task/PID/schedstat; null without it. */
function runQueueWait(child: Child): number | null {
  try {
    const pid = child.proc.pid;
    return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
  } catch {
    return null;
  }
}

function difference(before: number | null, after: number | null): number | null {
  return before !== null && after !== null ? after - before : null;
}

function percent(before: number | null, after: number | null, startedAt: number): number | null {
  return before !== null && after !== null ? ((after - before) * 100_000) / (performance.now() - startedAt) : null;
}

function describe(row: Row): string {
  if (row.failure !== undefined) return `failed: ${row.failure}`;
  const r = row.result!;
  const sat = row.saturated ? `saturated ${Math.round(row.saturated.rps)} req/s; ` : '';
  return `${sat}${r.rps} req/s paced, p50 ${r.p50Ms} / p99 ${r.p99Ms} / p99.9 ${r.p999Ms} ms, ${r.errors} errors`;
}

function latencySection(env: ReturnType<typeof describeEnvironment>, rate: number, rows: Row[], nice: number): string {
  const direct = rows.find((r) => r.name === t.DIRECT.name && r.failure === undefined)?.result;
  const added = (value: number, base: number | undefined): string => {
    if (base === undefined) return '–';
    const d = value - base;
    return `${d < 0 ? '−' : '+'}${Math.abs(d).toFixed(2)}`;
  };
  const lines = [
    '## Paced latency',
    '',
    '`npm run bench:paced` (bench/paced.ts) finds Meridian\'s saturation rate (small GETs, 50 connections, ' + (HAS_WRK ? 'wrk' : 'autocannon') + '),',
    'then sends half that rate to each target with bench/pacer.ts: an open-loop generator on 50 keep-alive',
    'connections where request i is due at start + i / rate (evenly spread, never a burst per second) and its',
    'latency counts from when it was due, so a stall delays and counts every request behind it. Targets are pinned',
    'to CPU 0, the generator and the nginx upstream to CPU 1; each gets a discarded warm-up first. Run-queue wait is',
    "how long the target's main thread was ready to run but waited for its core (other processes' turn, from",
    '/proc/PID/task/PID/schedstat): far above the GC pause total below, the tail is the machine\'s, not the target\'s.',
    `Upstream, targets and generators all ran at nice ${nice} (PACED_NICE), so other work on a shared machine intrudes less.`,
    'Direct shares CPU 1 between the upstream and the generator, so its p50 can sit above a proxy\'s, where the two',
    'halves of each exchange run on different cores; the added figures are differences of percentiles, not percentiles',
    'of differences.',
    '',
    ...environmentLines(env),
    `- load: ${rate.toLocaleString('en-US')} req/s (half of Meridian's saturation), ${WARMUP_S} s warm-up, ${DURATION_S} s measured per target`,
    '',
    '### Added latency at half saturation: p50 / p99 / p99.9 over direct',
    '',
    '| target | req/s | p50 ms | p99 ms | p99.9 ms | max ms | added p50 / p99 / p99.9 ms | CPU % | run-queue wait ms | generator lag p99 ms | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of rows) {
    if (row.failure !== undefined) {
      lines.push(`| ${row.name} | failed: ${row.failure.replaceAll('|', '/')} | | | | | | | | | |`);
      continue;
    }
    const r = row.result!;
    const addedCell = row.name === t.DIRECT.name ? '–' : `${added(r.p50Ms, direct?.p50Ms)} / ${added(r.p99Ms, direct?.p99Ms)} / ${added(r.p999Ms, direct?.p999Ms)}`;
    const cpu = row.cpuPercent == null ? '–' : row.cpuPercent.toFixed(0);
    lines.push(`| ${row.name} | ${r.rps.toLocaleString('en-US')} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${r.p999Ms.toFixed(2)} | ${r.maxMs.toFixed(2)} | ${addedCell} | ${cpu} | ${row.runQueueWaitMs == null ? '–' : row.runQueueWaitMs.toFixed(0)} | ${r.sendLagP99Ms.toFixed(2)} | ${r.errors} |`);
  }
  const meridian = rows.find((r) => r.name === 'Meridian' && r.failure === undefined)?.result;
  const addedP99 = meridian && direct ? meridian.p99Ms - direct.p99Ms : undefined;
  lines.push(
    '',
    addedP99 === undefined
      ? `- Meridian added p99 at half saturation: not measured (goal ≤ ${GOAL_ADDED_P99_MS} ms)`
      : `- Meridian added p99 at half saturation: ${addedP99.toFixed(2)} ms (goal ≤ ${GOAL_ADDED_P99_MS} ms) ${addedP99 <= GOAL_ADDED_P99_MS ? 'met' : 'MISSED'}`,
    '',
  );
  return lines.join('\n');
}

function gcSection(rate: number, rows: Row[]): string {
  const lines = [
    '## GC and the young generation',
    '',
    `Meridian's garbage collection over the paced window above (${rate.toLocaleString('en-US')} req/s, ${DURATION_S} s), from \`--trace-gc-nvp\`,`,
    'one fresh process per row (the same build), each saturated once and warmed up the same way first. "As shipped"',
    'is the image: a 32 MiB semi-space, and scavenges on the pausing thread alone (`meridian start` sets',
    '`--no-parallel-scavenge`); "V8 default" gives node `--parallel-scavenge` and leaves the young generation to V8.',
    "Allocated bytes are the JS heap's (each collection's `allocated=`), divided by the requests served in the",
    'window; Buffer contents live off the heap and are not in them.',
    '',
    '| Meridian started with | saturated req/s | scavenges | mean pause ms | max pause ms | full GCs (max ms) | GC pause total ms | KiB allocated / request | KiB promoted / request | peak RSS MiB | paced p99 ms | p99.9 ms |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of rows) {
    const flags = row.gcLabel ?? row.name;
    if (row.failure !== undefined || row.gc === undefined) {
      lines.push(`| ${flags} | failed: ${(row.failure ?? 'no GC trace').replaceAll('|', '/')} | | | | | | | | | | |`);
      continue;
    }
    const g = row.gc;
    const r = row.result!;
    const perRequest = (bytes: number): string => (r.completed > 0 ? (bytes / r.completed / 1024).toFixed(1) : '–');
    lines.push(
      `| ${flags} | ${Math.round(row.saturated!.rps).toLocaleString('en-US')} | ${g.scavenges} | ${g.scavengeMeanMs.toFixed(2)} | ${g.scavengeMaxMs.toFixed(2)} | ${g.fullGcs} (${g.fullMaxMs.toFixed(1)}) | ${g.pauseTotalMs.toFixed(0)} | ${perRequest(g.allocatedBytes)} | ${perRequest(g.promotedBytes)} | ${row.rssPeakMiB == null ? '–' : row.rssPeakMiB.toFixed(0)} | ${r.p99Ms.toFixed(2)} | ${r.p999Ms.toFixed(2)} |`,
    );
  }
  lines.push('');
  return lines.join('\n');
}

/** Replaces each `## ` section of RESULTS.md by its new text (or appends it), leaving every other section as it is. */
function writeSections(sections: string[]): void {
  let text = readFileSync(RESULTS, 'utf8');
  for (const section of sections) {
    const heading = section.slice(0, section.indexOf('\n'));
    const start = text.indexOf(`\n${heading}\n`);
    if (start < 0) {
      text = `${text.trimEnd()}\n\n${section}`;
      continue;
    }
    const next = text.indexOf('\n## ', start + heading.length + 1);
    text = `${text.slice(0, start + 1)}${section}${next < 0 ? '' : `\n${text.slice(next + 1)}`}`;
  }
  writeFileSync(RESULTS, text.endsWith('\n') ? text : `${text}\n`);
}

runBench(main, TMP);
