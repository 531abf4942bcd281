// `meridian demo`: the embedded topology on loopback behind Meridian, a banner of what to try,
// and the same graceful stop on SIGINT/SIGTERM as `meridian start`.
import { ConfigError } from '../config/errors.ts';
import { demoBanner } from '../demo/banner.ts';
import { closeBackends, compileDemoConfig, startBackends } from '../demo/run.ts';
import { makeDemoCertificate } from '../demo/certificate.ts';
import type { DemoPorts } from '../demo/topology.ts';
import { serve } from './start.ts';

/** Ports for when 8080, 9090, 8443 or 8081 is taken (and for the CLI's own test). */
export const DEMO_PORT_ENV = 'MERIDIAN_DEMO_PORT';
export const DEMO_ADMIN_PORT_ENV = 'MERIDIAN_DEMO_ADMIN_PORT';
export const DEMO_HTTPS_PORT_ENV = 'MERIDIAN_DEMO_HTTPS_PORT';
export const DEMO_PROBE_PORT_ENV = 'MERIDIAN_DEMO_PROBE_PORT';

export async function runDemo(): Promise<number> {
  let ports: DemoPorts;
  try {
    ports = { listenPort: portFromEnv(DEMO_PORT_ENV), adminPort: portFromEnv(DEMO_ADMIN_PORT_ENV), httpsPort: portFromEnv(DEMO_HTTPS_PORT_ENV), probePort: portFromEnv(DEMO_PROBE_PORT_ENV) };
  } catch (err) {
    console.error(`meridian demo: ${(err as Error).message}`);
    return 1;
  }
  const backends = await startBackends();
  try {
    const certificate = await makeDemoCertificate();
    if (certificate === null) console.error('meridian demo: openssl was not found, so the demo serves plain HTTP only (install openssl for HTTPS and HTTP/2)');
    const config = compileDemoConfig(backends, ports, certificate);
    // serve reports a taken port in one line and returns 1.
    return await serve(config, { onStarted: () => console.log(demoBanner(config)) });
  } catch (err) {
    // For example MERIDIAN_REGION naming a region the demo does not have.
    if (!(err instanceof ConfigError)) throw err;
    console.error(err.message);
    return 1;
  } finally {
    await closeBackends(backends);
  }
}

/** The port is printed in the banner, so 0 ("any free port") is refused rather than shown as `:0`. */
function portFromEnv(name: string): number | undefined {
  const value = process.env[name];
  if (value === undefined || value === '') return undefined;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new Error(`${name}=${value} is not a port (1-65535)`);
  return port;
}
