// `meridian start`: load the config, run the proxy, and shut down gracefully on SIGTERM/SIGINT.
import { loadConfigFile } from '../config/load.ts';
import { ConfigError } from '../config/errors.ts';
import { CertificateError } from '../listen/certificates.ts';
import type { MeridianConfig } from '../config/types.ts';
import { startMeridian } from '../main.ts';
import { releaseStartupMemory } from '../control/release-memory.ts';
import { setFlagsFromString } from 'node:v8';

/**
 * Two V8 settings for a proxy's allocation pattern, process-wide and read at each collection, so setting them here
 * covers every thread started after; a flag given to node explicitly wins.
 *
 * Scavenges run on the thread that pauses, without V8's helper threads. Meridian's data-plane threads are meant to
 * fill the CPUs (`workers: auto` starts one per CPU), so a helper can only run by taking a core from a data-plane
 * thread, and the pausing thread waits until every helper has been scheduled. Measured on one pinned core with a few
 * hundred KiB of survivors: mean pauses 15–20 % shorter done alone on a quiet core, and maximum pauses of 1.5–2.6 ms
 * instead of up to 4–7 ms on a busy one (bench/paced.ts, "GC and the young generation").
 *
 * Request-body buffers count toward the heap's limits. node's HTTP parser copies every body chunk into a fresh
 * ~64 KiB Buffer; V8 otherwise counts those as external memory and starts a full collection every 64 MiB of them
 * (about ten a second at 300 MiB/s of uploads), marking the whole heap on helper threads that share the proxy's core.
 * Counted in the heap, they die in scavenges like any short-lived object: 1 MiB uploads went from 3.9 to 2.3 ms of CPU
 * each, for about 60 MiB more peak RSS while uploads stream (bench/run.ts, uploads).
 */
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);

function gcSettings(): void {
  const given = (flag: string): boolean => process.execArgv.some((arg) => arg.endsWith(flag));
  if (!given('parallel-scavenge')) setFlagsFromString('--no-parallel-scavenge');
  // Measured on Node 24; older V8s do not know the flag and would print an error for it.
  if (NODE_MAJOR >= 24 && !given('external-memory-accounted-in-global-limit')) setFlagsFromString('--external-memory-accounted-in-global-limit');
}

export async function runStart(path: string): Promise<number> {
  let config: MeridianConfig;
  try {
    config = await loadConfigFile(path);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(err.message);
    return 1;
  }
  return serve(config, { configPath: path });
}

/** Runs until a signal arrives; a second signal skips the drain. */
export interface ServeOptions {
  readonly onStarted?: () => void;
  /** Enables reload on SIGHUP (and `POST /reload`). */
  readonly configPath?: string;
}

export async function serve(config: MeridianConfig, options: ServeOptions = {}): Promise<number> {
  gcSettings();
  let meridian;
  try {
    meridian = await startMeridian(config, { configPath: options.configPath });
  } catch (err) {
    const message = startupProblem(err, config);
    if (message === null) throw err;
    console.error(`meridian: ${message}`);
    return 1;
  }
  const { self } = config.topology;
  console.log(
    `meridian ${self.region}/${self.zone}: ${meridian.listenerAddresses.map((l) => `${l.name} on ${l.address}:${l.port}`).join(', ')}, ` +
      `admin on ${meridian.adminAddress.address}:${meridian.adminAddress.port}` +
      (meridian.probeAddress === null ? '' : `, probe on ${meridian.probeAddress.address}:${meridian.probeAddress.port}`),
  );
  options.onStarted?.();
  // Loading and starting grew this thread's young generation (about 23 MiB), which an idle process never gives back;
  // one compacting collection now, while traffic is only beginning, returns it.
  releaseStartupMemory();
  // reload() logs and counts its outcome itself (as for POST /reload) and never rejects.
  const reloadOnHangup = (): void => void meridian.runtime.reload();
  if (options.configPath !== undefined) process.on('SIGHUP', reloadOnHangup);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  console.log(`meridian: ${signal}, draining (readiness is now 503)`);
  const forceExit = (): void => process.exit(1);
  process.once('SIGTERM', forceExit);
  process.once('SIGINT', forceExit);
  process.off('SIGHUP', reloadOnHangup);
  await meridian.shutdown();
  console.log('meridian: stopped');
  return 0;
}

/** A one-line explanation for failures an operator can fix, or null for real bugs (which keep their stack). */
function startupProblem(err: unknown, config: MeridianConfig): string | null {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number; listener?: string };
  if (e.code === 'GEO_DATABASE_INVALID') return e.message;
  if (err instanceof CertificateError) return `tls.certificates: ${err.message}`;
  if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') {
    const ports = config.listen.map((l) => `${l.name} ${l.port}`).join(', ');
    const which = e.listener === undefined ? '' : ` (listener ${e.listener})`;
    return `cannot listen on ${e.address ?? ''}:${e.port ?? ''}${which} (${e.code}); check listen, admin and probe in the config (listen: ${ports}; admin.port ${config.admin.port}${config.probe === null ? '' : `, probe.port ${config.probe.port}`})`;
  }
  return null;
}
