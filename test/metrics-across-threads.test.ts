// Metrics show the process's totals whatever thread counted them: two real worker threads, each with its own compiled
// copy of the config, record the same mix of exchanges into the same shared tables at once, and the main thread's
// Prometheus scrape and traffic summary show exactly twice the mix, label by label, bucket by bucket.
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { describe, expect, test } from 'vitest';
import { startMetrics } from '../src/observe/metrics.ts';
import { summarize } from '../src/observe/summary.ts';
import { CODES, METHODS, NONE, codeIndex } from '../src/observe/labels.ts';
import { LATENCY_BUCKETS, SUMMARY_WINDOW_SECONDS, TrafficCatalog } from '../src/observe/traffic-tables.ts';
import type { Scenario, WorkerInput } from './support/traffic-recorder-worker.ts';
import { compile, mixed, quietRuntime } from './support/synthetic-records.ts';

const WORKER = new URL('./support/traffic-recorder-worker.ts', import.meta.url);
const THREADS = 2;
const RECORDS = 300_000;
const FAILOVER_EVERY = 64;
const FIRST_SECOND = Math.floor(Date.UTC(2026, 0, 1) / 1000);

async function runThreads(scenario: Scenario): Promise<void> {
  const input: WorkerInput = { arrived: new SharedArrayBuffer(4), threads: THREADS, scenario };
  await Promise.all(
    Array.from({ length: THREADS }, async () => {
      const worker = new Worker(WORKER, { workerData: input });
      const exited = once(worker, 'exit');
      // `once` rejects on the worker's 'error' event, so a thread that throws fails the test instead of hanging it.
      await once(worker, 'message');
      await exited;
    }),
  );
}

/** `name{labels} value` lines of one metric, by their label text. */
function samples(body: string, name: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of body.split('\n')) {
    const match = /^(\w+)(\{.*\})? (\S+)$/.exec(line);
    if (match !== null && match[1] === name) out[match[2] ?? ''] = Number(match[3]);
  }
  return out;
}

describe('two recorder threads, one set of tables', () => {
  test('a scrape on the main thread shows exactly both threads’ requests, histograms, failovers, and the summary their rates', async () => {
    const config = compile();
    const { topology } = config;
    const tables = new TrafficCatalog();
    await runThreads({ kind: 'records', tables: tables.describe(topology), records: RECORDS, firstSecond: FIRST_SECOND, seconds: SUMMARY_WINDOW_SECONDS, failoverEvery: FAILOVER_EVERY });

    // The same mix, worked out here with this thread's own config.
    const requests: Record<string, number> = {};
    const count: Record<string, number> = {};
    const sumUs: Record<string, number> = {};
    const fastest: Record<string, number> = {};
    const byZone: Record<string, { requests: number; errors: number }> = {};
    for (let i = 0; i < RECORDS; i++) {
      const record = mixed(topology, i, RECORDS, FIRST_SECOND, SUMMARY_WINDOW_SECONDS);
      const [region, zone] = record.endpoint === null ? [NONE, NONE] : [record.endpoint.region, record.endpoint.zone];
      const where = `region="${region}",zone="${zone}"`;
      const key = `{${where},method="${METHODS[record.methodClass]}",code="${CODES[codeIndex(record)]}"}`;
      requests[key] = (requests[key] ?? 0) + THREADS;
      count[`{${where}}`] = (count[`{${where}}`] ?? 0) + THREADS;
      sumUs[`{${where}}`] = (sumUs[`{${where}}`] ?? 0) + THREADS * Math.round(record.durationMs * 1000);
      if (record.durationMs / 1000 <= LATENCY_BUCKETS[0]) fastest[`{${where},le="${LATENCY_BUCKETS[0]}"}`] = (fastest[`{${where},le="${LATENCY_BUCKETS[0]}"}`] ?? 0) + THREADS;
      const totals = (byZone[`${region}/${zone}`] ??= { requests: 0, errors: 0 });
      totals.requests += THREADS;
      if (codeIndex(record) >= 4) totals.errors += THREADS;
    }

    const exporter = startMetrics(quietRuntime(() => config), tables);
    const { body } = await exporter.scrape();
    exporter.close();
    expect(Object.values(samples(body, 'meridian_requests_total')).reduce((a, b) => a + b, 0)).toBe(THREADS * RECORDS);
    expect(samples(body, 'meridian_requests_total')).toEqual(requests);
    expect(samples(body, 'meridian_request_duration_seconds_count')).toEqual(count);
    const sums = samples(body, 'meridian_request_duration_seconds_sum');
    for (const [where, us] of Object.entries(sumUs)) expect(sums[where], where).toBe(us / 1e6);
    const buckets = samples(body, 'meridian_request_duration_seconds_bucket');
    for (const [where, n] of Object.entries(fastest)) expect(buckets[where], where).toBe(n);
    for (const where of Object.keys(count)) expect(buckets[`${where.slice(0, -1)},le="+Inf"}`]).toBe(count[where]);
    const failovers = THREADS * Math.ceil(RECORDS / FAILOVER_EVERY);
    expect(samples(body, 'meridian_failovers_total')).toEqual({ '{from_region="us-east",to_region="eu-west"}': failovers });
    expect(samples(body, 'meridian_retries_total')).toEqual({ '{reason="connect_failure"}': failovers, '{reason="reset"}': 0, '{reason="upstream_5xx"}': 0 });

    // Every record ended within the window's ten seconds, each of which both threads began at once. A count the ring
    // left out (its reset stalled) is counted as such; none goes missing unsaid.
    const summary = summarize(tables, topology, FIRST_SECOND + SUMMARY_WINDOW_SECONDS, SUMMARY_WINDOW_SECONDS);
    expect(Object.fromEntries(summary.zones.map((z) => [`${z.region}/${z.zone}`, { requests: z.requests, errors: z.errors }]))).toEqual(byZone);
    const inWindow = Math.round(summary.zones.reduce((sum, z) => sum + z.rps, 0) * SUMMARY_WINDOW_SECONDS);
    const leftOut = tables.newest.ring.leftOut;
    expect(inWindow + leftOut).toBe(THREADS * RECORDS);
    expect(leftOut).toBeLessThan(100);
    expect(Object.fromEntries(summary.countries.map((c) => [c.country, c.requests]))).toEqual({ SE: THREADS * (RECORDS / 4), GB: THREADS * (RECORDS / 4), US: THREADS * (RECORDS / 4) });
    expect(summary.failovers).toHaveLength(20);
    expect(summary.failovers[0]).toMatchObject({ from: { region: 'us-east', zone: 'az-1' }, to: { region: 'eu-west', zone: 'az-1' }, reason: 'connect_failure' });
  }, 60_000);
});
