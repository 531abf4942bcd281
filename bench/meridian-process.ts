// Meridian started with extra node flags for a measurement (GC tracing, the inspector, young-generation sizes): the
// JavaScript build as bench/targets.ts runs it, pinned to the proxy CPU, keeping its whole output for parsing.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, httpStatus, startChild, stopChild, type Child } from './children.ts';
import { MERIDIAN_CLI, PROXY_CPU, meridianConfig, type Server } from './targets.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const READY_TIMEOUT_MS = 20_000;

export interface MeridianOptions {
  /** Node flags before the script, e.g. `--trace-gc-nvp` or `--max-semi-space-size=32`. */
  readonly nodeFlags?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly workers?: number;
  /** Run src/cli/index.ts instead of the build (for profiles whose frames should name the sources). */
  readonly fromSources?: boolean;
}

export async function startMeridian(name: string, upstreamUrl: string, dir: string, o: MeridianOptions = {}): Promise<Server> {
  const port = await freePort();
  const config = join(dir, `${name.replace(/[^a-z0-9]+/gi, '-')}.yaml`);
  writeFileSync(config, meridianConfig(upstreamUrl, port, o.workers));
  const cli = o.fromSources ? join(ROOT, 'src/cli/index.ts') : MERIDIAN_CLI;
  const child = startChild(name, process.execPath, [...(o.nodeFlags ?? []), cli, 'start', '--config', config], {
    cpu: PROXY_CPU,
    cwd: ROOT,
    env: o.env ?? process.env,
    keepOutput: true,
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor200(child, url);
  return { url, child, stop: () => stopChild(child) };
}

/** Polls `GET /` until it answers 200; fails with the child's output if it exits or the deadline passes. */
export async function waitFor200(child: Child, url: string): Promise<void> {
  let exited = false;
  void child.exited.then(() => (exited = true));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline && !exited) {
    if ((await httpStatus(url)) === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await stopChild(child);
  throw new Error(`${child.name} did not answer 200 on ${url}${exited ? ' (it exited)' : ''}:\n${child.output().slice(-2_000)}`);
}
