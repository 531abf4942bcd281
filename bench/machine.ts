// What the results depend on besides the code: the machine, the runtime, and the tool and package versions.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg, release, totalmem } from 'node:os';
import { CAN_PIN, hasCommand } from './children.ts';

const PACKAGES = ['undici', 'autocannon', 'http-proxy', 'fastify', '@fastify/http-proxy'];

export interface Environment {
  readonly date: string;
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly pinning: string;
  readonly packages: readonly string[];
  readonly tools: readonly string[];
  /** 1-minute load average when the run started; other work on the machine skews every number. */
  readonly loadAtStart: number;
}

export function describeEnvironment(): Environment {
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cpu: cpuModel(),
    cores: availableParallelism(),
    memoryGiB: totalmem() / 1024 ** 3,
    kernel: `Linux ${release()}`,
    node: process.version,
    pinning: CAN_PIN ? 'taskset: proxy on CPU 0; upstream and load generator on CPU 1' : 'none (taskset not found)',
    packages: PACKAGES.map((name) => `${name} ${packageVersion(name)}`),
    tools: [toolVersion('nginx', ['-v'], /nginx\/(\S+)/), toolVersion('haproxy', ['-v'], /version (\S+)/), toolVersion('wrk', ['-v'], /^wrk (\S+)/m)],
    loadAtStart: loadavg()[0],
  };
}

export function environmentLines(env: Environment): string[] {
  return [
    `- date: ${env.date}`,
    `- machine: ${env.cpu}, ${env.cores} cores, ${env.memoryGiB.toFixed(1)} GiB RAM, ${env.kernel}`,
    `- pinning: ${env.pinning}`,
    `- Node ${env.node}; ${env.packages.join(', ')}`,
    `- tools: ${env.tools.join(', ')}`,
    `- 1-minute load average before the run: ${env.loadAtStart.toFixed(2)} (other work on the machine skews every number)`,
  ];
}

function cpuModel(): string {
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    return match ? match[1].trim() : 'unknown CPU';
  } catch {
    return 'unknown CPU';
  }
}

function packageVersion(name: string): string {
  try {
    const url = new URL(`../node_modules/${name}/package.json`, import.meta.url);
    return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
  } catch {
    return 'not installed';
  }
}

function toolVersion(name: string, args: string[], pattern: RegExp): string {
  if (!hasCommand(name)) return `${name} not installed`;
  // Each of these prints its version on stderr or stdout, and wrk exits 1 after printing it.
  const result = spawnSync(name, args, { encoding: 'utf8' });
  const match = pattern.exec(`${result.stdout}\n${result.stderr}`);
  return `${name} ${match ? match[1] : 'unknown version'}`;
}
