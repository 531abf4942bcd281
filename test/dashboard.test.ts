// The dashboard in a real headless Chromium against the demo topology: it renders every region and zone with this
// instance highlighted, follows a zone going down by polling /status, and raises no console or page errors.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { chromium, type Browser, type Page } from 'playwright-core';
import { compileConfig } from '../src/config/compile.ts';
import { startMeridian, type Meridian } from '../src/main.ts';
import { closeBackends, startBackends } from '../src/demo/run.ts';
import { DEMO_ZONES, SEED_REGIONS, demoConfig, type DemoOrigins } from '../src/demo/topology.ts';
import type { DemoBackend } from '../src/demo/backend.ts';
import { DBIP_CREDIT } from '../src/admin/status.ts';
import { send } from './support/harness.ts';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'];
const SCREENSHOT = new URL('../test-output/dashboard.png', import.meta.url);

let backends: DemoBackend[] = [];
let meridian: Meridian | undefined;
let browser: Browser | undefined;

/**
 * The demo (`startDemo`) exactly, but with health checks fast enough that a killed backend is seen within a
 * second: the demo itself keeps the 5 s production interval, which would make this test wait 15 s.
 */
async function startFastDemo(): Promise<Meridian> {
  backends = await startBackends();
  const origins: Record<string, Record<string, string>> = {};
  for (const b of backends) (origins[b.region] ??= {})[b.zone] = b.origin;
  const raw = { ...demoConfig(origins as DemoOrigins, { listenPort: 0, adminPort: 0 }), health: { interval: '200ms', unhealthyInterval: '200ms', timeout: '1s', fall: 2 } };
  return startMeridian(compileConfig(raw, {}, 'demo'));
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: this test drives a real headless browser; install the Debian package "chromium" (apt-get install -y chromium)`);
  }
  [meridian, browser] = await Promise.all([startFastDemo(), chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS })]);
});

afterAll(async () => {
  await browser?.close();
  await meridian?.shutdown();
  await closeBackends(backends);
});

/** Every console error and uncaught page error, as text. */
function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => errors.push(`page: ${err.message}`));
  return errors;
}

test('renders the four regions, eight zones and this instance, and shows a killed zone go down', async () => {
  const page = await browser!.newPage({ viewport: { width: 1440, height: 1000 } });
  const errors = watchErrors(page);
  const { port } = meridian!.proxyAddress;
  // Some traffic from around the world, so the zone figures and the misroute table have something to show.
  const clients = ['81.2.69.142', '89.160.20.112', '93.40.7.9', '216.160.83.56', '66.108.1.2'];
  await Promise.all(clients.flatMap((ip) => Array.from({ length: 6 }, () => send(port, { path: '/v1/locale', headers: { 'x-forwarded-for': ip } }))));

  await page.goto(`http://127.0.0.1:${meridian!.adminAddress.port}/`);
  await page.waitForSelector('#zones tr[data-zone]');

  const regions = await page.locator('#marks g.region').evaluateAll((gs) => gs.map((g) => [g.getAttribute('data-region'), g.getAttribute('data-health')]));
  expect(regions.sort()).toEqual(Object.keys(SEED_REGIONS).map((r) => [r, 'ok']).sort());
  const zones = await page.locator('#zones tr[data-zone]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-zone')));
  expect(zones.sort()).toEqual(Object.keys(SEED_REGIONS).flatMap((r) => DEMO_ZONES.map((z) => `${r}/${z}`)).sort());
  expect(await page.locator('#endpoints tr[data-endpoint]').count()).toBe(8);

  // This instance: the pulsing marker on the map and the highlighted zone row.
  expect(await page.locator('#marks g.region[data-self]').getAttribute('data-region')).toBe('us-east');
  expect(await page.locator('#marks g.region[data-self] circle.ring').count()).toBe(1);
  expect(await page.locator('#zones tr.self').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-zone')))).toEqual(['us-east/az-1']);
  expect(await page.locator('#self').textContent()).toBe('us-east / az-1');
  expect(await page.locator('#ready').textContent()).toBe('ready');
  expect(await page.locator('#credit').textContent()).toBe(DBIP_CREDIT);
  expect(await page.locator('#base circle.land').count()).toBeGreaterThan(200);

  const killed = backends.find((b) => b.region === 'eu-north' && b.zone === 'az-3')!;
  await killed.close();
  await page.waitForSelector('#zones tr[data-zone="eu-north/az-3"][data-health="down"]', { timeout: 10_000 });
  await page.waitForSelector('#marks g.region[data-region="eu-north"][data-health="warn"]', { timeout: 5_000 });
  expect(await page.locator(`#endpoints tr[data-endpoint="${killed.origin}"]`).getAttribute('data-state')).toBe('down');
  expect(await page.locator('#zones tr[data-zone="eu-north/az-1"]').getAttribute('data-health')).toBe('ok');

  await mkdir(new URL('.', SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT.pathname, fullPage: true });
  await page.close();
  expect(errors).toEqual([]);
});
