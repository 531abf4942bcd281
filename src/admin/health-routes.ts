// Liveness and readiness, served the same way by the admin plane and by the public probe listener.
import type { Hono } from 'hono';
import type { MeridianRuntime } from '../main.ts';

/** `/healthz`: the process runs. `/readyz`: this AZ can serve locally and is not draining (GeoDNS polls it). */
export function mountHealthRoutes(app: Hono, runtime: Pick<MeridianRuntime, 'ready'>): void {
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) => {
    const { ok, reason } = runtime.ready();
    return c.json({ status: ok ? 'ready' : 'not ready', reason }, ok ? 200 : 503);
  });
}
