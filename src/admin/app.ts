// The admin plane's HTTP API (hono), on its own port: liveness and readiness for now.
import { Hono } from 'hono';

export interface AdminState {
  /** False while draining or when this AZ can no longer serve locally. */
  ready(): { ok: boolean; reason: string };
}

export function createAdminApp(state: AdminState): Hono {
  const app = new Hono();
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) => {
    const { ok, reason } = state.ready();
    return c.json({ status: ok ? 'ready' : 'not ready', reason }, ok ? 200 : 503);
  });
  app.notFound((c) => c.json({ message: 'Not found', code: 404, type: 'meridian_admin_not_found' }, 404));
  return app;
}
