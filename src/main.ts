// Composition root: builds the data plane, the admin plane and their wiring from one config.
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MeridianConfig } from './config/types.ts';
import { createGeoRouter } from './routing/geo-router.ts';
import { GeoLocator, DEFAULT_GEO_DATABASES } from './geo/locator.ts';
import { UploadPins } from './proxy/upload-pins.ts';
import { UpstreamPools } from './proxy/pools.ts';
import { createDataPlane, Traffic } from './proxy/plane.ts';
import { ProxyServer } from './proxy/server.ts';
import { createAdminApp } from './admin/app.ts';
import { listenAdmin } from './admin/server.ts';

export interface Meridian {
  readonly proxyAddress: AddressInfo;
  readonly adminAddress: AddressInfo;
  /** DESIGN.md §7: readiness off, drain delay, stop accepting, wait for in-flight, end the rest. */
  shutdown(): Promise<void>;
}

export async function startMeridian(config: MeridianConfig): Promise<Meridian> {
  const traffic = new Traffic();
  const pools = new UpstreamPools();
  const locator = await GeoLocator.open(config.geo.databases ?? DEFAULT_GEO_DATABASES, {
    cacheSize: config.geo.cacheSize,
    onReload: ({ path, ok, error }) =>
      console.error(ok ? `meridian: geo database ${path} reloaded` : `meridian: geo database ${path} rejected, the previous one keeps serving: ${error?.message}`),
  });
  locator.watch();
  const { ttl, maxEntries } = config.routing.uploadPinning;
  const uploadPins = new UploadPins(ttl, maxEntries);
  const plane = createDataPlane(config, createGeoRouter(config), { pools, traffic, locator, uploadPins });
  const proxy = new ProxyServer(plane);
  const admin = createAdminApp({
    ready: () => (traffic.draining ? { ok: false, reason: 'draining' } : { ok: true, reason: 'serving' }),
  });
  const proxyAddress = await proxy.listen(config.listen.host, config.listen.port);
  let adminServer: Server;
  let adminAddress: AddressInfo;
  try {
    ({ server: adminServer, address: adminAddress } = await listenAdmin(admin, config.admin.host, config.admin.port));
  } catch (err) {
    await proxy.close(0);
    locator.close();
    throw err;
  }

  let stopping: Promise<void> | undefined;
  const shutdown = async (): Promise<void> => {
    traffic.draining = true;
    const { drainDelay, drainTimeout } = proxy.plane.config.shutdown;
    if (drainDelay > 0) await sleep(drainDelay);
    await proxy.close(drainTimeout);
    await pools.close();
    locator.close();
    await new Promise<void>((resolve) => adminServer.close(() => resolve()));
  };
  return {
    proxyAddress,
    adminAddress,
    shutdown: () => (stopping ??= shutdown()),
  };
}
