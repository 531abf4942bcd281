// The paced load generator (bench/pacer.ts) as a child process pinned to the load CPU, so it never shares a core with
// the proxy under test; returns its JSON result.
import { fileURLToPath } from 'node:url';
import { runChild } from './children.ts';
import { LOAD_CPU } from './targets.ts';
import type { PacedResult } from './pacer.ts';

const PACER = fileURLToPath(new URL('./pacer.ts', import.meta.url));

export interface PacedRun {
  readonly rate: number;
  readonly connections: number;
  readonly durationS: number;
  readonly warmupS?: number;
  readonly headers?: Readonly<Record<string, string>>;
}

export async function paced(url: string, o: PacedRun): Promise<PacedResult> {
  // A larger young generation keeps the generator's own scavenges rare and short.
  const args = ['--max-semi-space-size=32', PACER, url, '--rate', String(o.rate), '--connections', String(o.connections), '--duration', String(o.durationS), '--warmup', String(o.warmupS ?? 0)];
  for (const [name, value] of Object.entries(o.headers ?? {})) args.push('--header', `${name}: ${value}`);
  const output = await runChild('pacer', process.execPath, args, ((o.warmupS ?? 0) + o.durationS) * 1000 + 30_000, { cpu: LOAD_CPU });
  const line = output.split('\n').find((l) => l.startsWith('{'));
  if (line === undefined) throw new Error(`pacer printed no result:\n${output.slice(-2_000)}`);
  return JSON.parse(line) as PacedResult;
}
