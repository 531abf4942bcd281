// Starts the demo: the eight simulated backends, the embedded topology compiled over them, and Meridian in front.
import { compileConfig } from '../config/compile.ts';
import type { MeridianConfig } from '../config/types.ts';
import { startMeridian, type Meridian } from '../main.ts';
import { startBackend, type DemoBackend } from './backend.ts';
import { makeDemoCertificate, type DemoCertificate } from './certificate.ts';
import { DEMO_ZONES, SEED_REGIONS, demoConfig, type DemoPorts } from './topology.ts';

export interface Demo {
  readonly meridian: Meridian;
  readonly backends: readonly DemoBackend[];
  readonly config: MeridianConfig;
  /** Shuts Meridian down (draining), then the backends. */
  stop(): Promise<void>;
}

/** One backend per seed region and zone, all on loopback ports chosen by the OS. */
export async function startBackends(): Promise<DemoBackend[]> {
  const pairs = Object.keys(SEED_REGIONS).flatMap((region) => DEMO_ZONES.map((zone) => [region, zone] as const));
  const started = await Promise.allSettled(pairs.map(([region, zone]) => startBackend(region, zone)));
  const backends = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await closeBackends(backends);
    throw failed.reason;
  }
  return backends;
}

export async function closeBackends(backends: readonly DemoBackend[]): Promise<void> {
  await Promise.all(backends.map((b) => b.close()));
}

/** The demo config over running backends; env MERIDIAN_REGION / MERIDIAN_ZONE apply as for any config. */
export function compileDemoConfig(backends: readonly DemoBackend[], ports: DemoPorts = {}, certificate: DemoCertificate | null = null): MeridianConfig {
  const origins: Record<string, Record<string, string>> = {};
  for (const b of backends) (origins[b.region] ??= {})[b.zone] = b.origin;
  return compileConfig(demoConfig(origins, ports, certificate), process.env, 'demo');
}

export async function startDemo(options: DemoPorts = {}): Promise<Demo> {
  const backends = await startBackends();
  try {
    const config = compileDemoConfig(backends, options, await makeDemoCertificate());
    const meridian = await startMeridian(config);
    let stopping: Promise<void> | undefined;
    const stop = async (): Promise<void> => {
      await meridian.shutdown();
      await closeBackends(backends);
    };
    return { meridian, backends, config, stop: () => (stopping ??= stop()) };
  } catch (err) {
    await closeBackends(backends);
    throw err;
  }
}
