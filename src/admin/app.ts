// The admin plane's HTTP API (hono), on its own port: liveness, readiness, metrics, status, route explanation,
// reload and the dashboard, behind the optional bearer token.
import { Hono } from 'hono';
import type { MeridianRuntime } from '../main.ts';
import { normalizeIp } from '../geo/client-ip.ts';
import { explainRoute } from '../routing/explain.ts';
import { requireToken } from './auth.ts';
import { mountHealthRoutes } from './health-routes.ts';
import { originGuard } from './origin-guard.ts';
import { dashboardPage } from './dashboard.ts';
import { ADMIN_ERRORS, adminError } from './errors.ts';
import { statusReport } from './status.ts';

export function createAdminApp(runtime: MeridianRuntime): Hono {
  const app = new Hono();
  const page = dashboardPage();
  app.use(async (c, next) => {
    await next();
    c.header('cache-control', 'no-store');
  });
  // Before the token: a rebinding page must not even learn whether one is needed.
  app.use(originGuard(() => runtime.plane().config.admin.allowedHosts));
  app.use(requireToken(() => runtime.plane().config.admin.token));

  mountHealthRoutes(app, runtime);

  app.get('/metrics', async (c) => {
    const { contentType, body } = await runtime.metrics.scrape(c.req.header('accept'));
    return c.body(body, 200, { 'content-type': contentType });
  });

  app.get('/status', (c) => c.json(statusReport(runtime)));

  app.get('/route', (c) => {
    const given = c.req.query('ip');
    if (given === undefined || given === '') return adminError(c, 400, ADMIN_ERRORS.badRequest, 'the ip query parameter is required, as in /route?ip=81.2.69.142');
    const ip = normalizeIp(given);
    if (ip === null) return adminError(c, 400, ADMIN_ERRORS.badRequest, `ip ${JSON.stringify(given)} is not an IP address`);
    // The live router: built over the current health snapshot, and rebuilt whenever health or config changes.
    const { router } = runtime.plane();
    const location = runtime.locator.locate(ip);
    const decision = router.route({ clientIp: ip, host: c.req.query('host'), location, project: c.req.query('project'), pinnedRegion: undefined });
    return c.json({ ...explainRoute(ip, location, decision, runtime.pendingHome), panic: decision.panic });
  });

  // reload() logs and counts the outcome, and never rejects: whatever went wrong is a 400 naming its field.
  app.post('/reload', async (c) => {
    const result = await runtime.reload();
    return result.ok
      ? c.json({ ok: true, version: result.version, restartRequired: [...result.restartRequired] })
      : c.json({ ok: false, problems: [...result.problems] }, 400);
  });
  app.on(['GET', 'HEAD', 'PUT', 'PATCH', 'DELETE'], '/reload', (c) => {
    c.header('allow', 'POST');
    return adminError(c, 405, ADMIN_ERRORS.methodNotAllowed, 'reload with POST /reload');
  });

  app.get('/', (c) => {
    c.header('content-security-policy', page.contentSecurityPolicy);
    c.header('x-content-type-options', 'nosniff');
    c.header('referrer-policy', 'no-referrer');
    return c.html(page.html);
  });

  app.notFound((c) => adminError(c, 404, ADMIN_ERRORS.notFound, `no admin endpoint at ${c.req.method} ${c.req.path}`));
  app.onError((err, c) => {
    console.error(`meridian: admin ${c.req.method} ${c.req.path} failed:`, err);
    return adminError(c, 500, ADMIN_ERRORS.internal, 'the admin request failed; see the server log');
  });
  return app;
}
