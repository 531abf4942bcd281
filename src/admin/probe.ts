// The probe listener: `/readyz` and `/healthz` only, for GeoDNS and load-balancer checkers on the public side.
// It answers to any Host and needs no token, because it reveals nothing but whether this AZ should get traffic;
// metrics, status, reload and the dashboard stay on the private admin port.
import { Hono } from 'hono';
import type { MeridianRuntime } from '../main.ts';
import { ADMIN_ERRORS, adminError } from './errors.ts';
import { mountHealthRoutes } from './health-routes.ts';

export function createProbeApp(runtime: Pick<MeridianRuntime, 'ready'>): Hono {
  const app = new Hono();
  app.use(async (c, next) => {
    await next();
    c.header('cache-control', 'no-store');
  });
  mountHealthRoutes(app, runtime);
  app.notFound((c) => adminError(c, 404, ADMIN_ERRORS.notFound, 'this listener serves only GET /readyz and GET /healthz'));
  return app;
}
