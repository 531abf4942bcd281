// A `{region, zone}` latency histogram fed from the shared tables' bucket counts at scrape time. prom-client's Histogram
// only takes single observations, so this is a metric of its own in the shape prom-client's Registry renders.
import { LATENCY_BUCKETS, LATENCY_WIDTH } from './traffic-tables.ts';
import type { ZoneName } from './labels.ts';

interface ZoneSeries {
  readonly region: string;
  readonly zone: string;
  /** Non-cumulative counts, the last one being +Inf. */
  readonly buckets: Float64Array;
  sum: number;
}

interface Sample {
  readonly metricName: string;
  readonly labels: Readonly<Record<string, string | number>>;
  readonly value: number;
}

export class ZoneHistogram {
  // What the Registry reads: name, help, type and aggregator, then get().
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #series = new Map<string, ZoneSeries>();

  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }

  /**
   * Adds what the tables counted since the last scrape: `delta` holds, from `bucketsAt`, LATENCY_WIDTH bucket counts
   * per zone of `zones` and, from `sumsAt`, a sum in microseconds per zone.
   */
  add(zones: readonly ZoneName[], delta: Float64Array, bucketsAt: number, sumsAt: number): void {
    for (let slot = 0; slot < zones.length; slot++) {
      const start = bucketsAt + slot * LATENCY_WIDTH;
      // A sum can move without its bucket when the scrape fell between the two additions.
      let any = delta[sumsAt + slot] !== 0;
      for (let b = start; b < start + LATENCY_WIDTH; b++) if (delta[b] !== 0) any = true;
      if (!any) continue;
      const { region, zone } = zones[slot];
      const key = `${region}\u0000${zone}`;
      let series = this.#series.get(key);
      if (series === undefined) {
        series = { region, zone, buckets: new Float64Array(LATENCY_WIDTH), sum: 0 };
        this.#series.set(key, series);
      }
      for (let b = 0; b < LATENCY_WIDTH; b++) series.buckets[b] += delta[start + b];
      series.sum += delta[sumsAt + slot] / 1e6;
    }
  }

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Sample[] }> {
    const { name } = this;
    const values: Sample[] = [];
    for (const { region, zone, buckets, sum } of this.#series.values()) {
      let cumulative = 0;
      for (let b = 0; b < LATENCY_BUCKETS.length; b++) {
        cumulative += buckets[b];
        values.push({ metricName: `${name}_bucket`, labels: { region, zone, le: LATENCY_BUCKETS[b] }, value: cumulative });
      }
      cumulative += buckets[LATENCY_BUCKETS.length];
      values.push({ metricName: `${name}_bucket`, labels: { region, zone, le: '+Inf' }, value: cumulative });
      values.push({ metricName: `${name}_sum`, labels: { region, zone }, value: sum });
      values.push({ metricName: `${name}_count`, labels: { region, zone }, value: cumulative });
    }
    return { name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
