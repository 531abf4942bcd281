// A `{region, zone}` latency histogram fed from bucket tallies at scrape time. prom-client's Histogram only takes
// single observations, so this is a metric of its own in the shape prom-client's Registry renders; no import needed.
import { LATENCY_BUCKETS, type BucketTally } from './tallies.ts';
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
  // What the Registry reads: name, help, type and aggregator, then get() and reset().
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #series = new Map<string, ZoneSeries>();

  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }

  /** Adds the tally's counts to the cumulative series and zeroes the tally. */
  drain(tally: BucketTally, zones: readonly ZoneName[]): void {
    const { counts, sums, width } = tally;
    for (let slot = 0; slot < zones.length; slot++) {
      const start = slot * width;
      let any = false;
      for (let b = start; b < start + width; b++) if (counts[b] !== 0) any = true;
      if (!any) continue;
      const { region, zone } = zones[slot];
      const key = `${region}\u0000${zone}`;
      let series = this.#series.get(key);
      if (series === undefined) {
        series = { region, zone, buckets: new Float64Array(width), sum: 0 };
        this.#series.set(key, series);
      }
      for (let b = 0; b < width; b++) series.buckets[b] += counts[start + b];
      counts.fill(0, start, start + width);
      series.sum += sums[slot];
      sums[slot] = 0;
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

  reset(): void {
    this.#series.clear();
  }
}
