// Whether this platform and Node share one port among listeners (SO_REUSEPORT): workers need it to each accept on
// the same port. Node ignores the option where the system lacks it, so the answer comes from trying.
import { createServer, type AddressInfo, type Server } from 'node:net';

/** Binds two listeners with `reusePort` to one loopback port; true when the second one succeeds. */
export async function reusePortWorks(): Promise<boolean> {
  const first = createServer();
  const second = createServer();
  try {
    await listen(first, 0);
    await listen(second, (first.address() as AddressInfo).port);
    return true;
  } catch {
    return false;
  } finally {
    first.close();
    second.close();
  }
}

function listen(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host: '127.0.0.1', reusePort: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * The data-plane threads to run for a `workers` setting. More than one needs a shared port; without one, a single
 * thread serves, and the operator is told why. `canSharePort` is the check, replaceable where a test must play a
 * system without SO_REUSEPORT.
 */
export async function chooseWorkerCount(wanted: number, canSharePort: () => Promise<boolean> = reusePortWorks): Promise<number> {
  if (wanted <= 1 || (await canSharePort())) return Math.max(1, wanted);
  console.error(`meridian: this system cannot share a port among listeners (SO_REUSEPORT), so one data-plane thread serves instead of ${wanted}`);
  return 1;
}
