// The dashboard in a real headless Chromium against the demo topology: a world map with land, the regions, where
// real clients come from and which region serves them, every zone with this instance highlighted, a zone going
// down followed by polling /status, and no console or page errors. Then an instance with an HTTPS listener: its
// certificates with their expiry, the one close to it flagged, and its listeners. Last, the latency of each region:
// an upstream slow to answer its probes gives its region the longest RTT bar and the slowest checks.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { compileConfig } from '../src/config/compile.ts';
import { startMeridian, type Meridian } from '../src/main.ts';
import { closeBackends, startBackends } from '../src/demo/run.ts';
import { DEMO_ZONES, SEED_REGIONS, demoConfig, type DemoOrigins } from '../src/demo/topology.ts';
import type { DemoBackend } from '../src/demo/backend.ts';
import { DBIP_CREDIT } from '../src/admin/status.ts';
import { project } from '../src/admin/world-map.ts';
import { closeServer, send, startProxy, startUpstream } from './support/harness.ts';
import { makeCa, makeCertificate } from './support/certs.ts';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'];
// Screenshots to look at after a run; outside the checkout, overwritten each run.
const SCREENSHOTS = join(tmpdir(), 'meridian-dashboard');

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
  const raw = { ...demoConfig(origins as DemoOrigins, { listenPort: 0, adminPort: 0, probePort: 0 }), health: { interval: '200ms', unhealthyInterval: '200ms', timeout: '1s', fall: 2 } };
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

/** What the map shows at a longitude and latitude: the id or class of the topmost element there. */
async function mapHit(page: Page, lon: number, lat: number): Promise<string> {
  const [x, y] = project(lon, lat);
  return page.evaluate(([x, y]) => {
    const svg = document.getElementById('map') as unknown as SVGSVGElement;
    const at = new DOMPoint(x, y).matrixTransform(svg.getScreenCTM()!);
    const hit = document.elementFromPoint(at.x, at.y);
    return hit === null ? 'nothing' : hit.id || `${hit.getAttribute('class')}${hit.getAttribute('data-country') ? `:${hit.getAttribute('data-country')}` : ''}`;
  }, [x, y]);
}

test('the map draws land, labels every region, and shows where clients come from and which region serves them', async () => {
  const page = await browser!.newPage({ viewport: { width: 1440, height: 1000 } });
  const errors = watchErrors(page);
  const { port } = meridian!.proxyAddress;
  // Clients in four countries through the loopback proxy the demo trusts: Sweden sends three times what the UK does.
  const clients: [ip: string, count: number][] = [
    ['89.160.20.112', 12], // SE, nearest eu-north
    ['81.2.69.142', 4], // GB, nearest eu-south
    ['93.40.7.9', 6], // IT, nearest eu-south
    ['216.160.83.56', 6], // US west coast, nearest us-west
    ['66.108.1.2', 6], // US east coast, served here in us-east
  ];
  await Promise.all(clients.flatMap(([ip, n]) => Array.from({ length: n }, () => send(port, { path: '/v1/locale', headers: { 'x-forwarded-for': ip } }))));

  await page.goto(`http://127.0.0.1:${meridian!.adminAddress.port}/`);
  // A hotspot per country, its rate in proportion to what was sent. Rates leave out the second still being
  // filled, so this polls until a render counts the whole burst.
  const spotRates = (): Promise<Record<string, number>> =>
    page.locator('#spots circle.spot').evaluateAll((cs) => {
      const rates = cs.map((c) => [c.getAttribute('data-country')!, Number(c.getAttribute('data-rps'))] as const);
      const gb = rates.find(([c]) => c === 'GB')?.[1] ?? 1;
      return Object.fromEntries(rates.map(([c, rps]) => [c, Math.round((rps / gb) * 1e6) / 1e6]));
    });
  await expect.poll(spotRates, { timeout: 8_000, interval: 250 }).toEqual({ GB: 1, IT: 1.5, SE: 3, US: 3 });

  // Land: one substantial path spanning the map, painted where the continents are and not over the oceans.
  const land = await page.locator('#land').evaluate((path) => ({ length: path.getAttribute('d')!.length, box: path.getBoundingClientRect().toJSON() as DOMRect }));
  const map = await page.locator('#map').evaluate((svg) => svg.getBoundingClientRect().toJSON() as DOMRect);
  expect(land.length).toBeGreaterThan(10_000);
  expect(land.box.width).toBeGreaterThan(0.95 * map.width);
  expect(land.box.height).toBeGreaterThan(0.8 * map.height);
  expect(await page.locator('#borders').evaluate((path) => path.getAttribute('d')!.length)).toBeGreaterThan(5_000);
  for (const [lon, lat] of [[-55, -10], [100, 62], [134, -25], [17, 27], [-105, 58]]) expect(await mapHit(page, lon, lat), `land at ${lon}, ${lat}`).toBe('land');
  for (const [lon, lat] of [[-140, 10], [-40, 40], [80, -20]]) expect(await mapHit(page, lon, lat), `sea at ${lon}, ${lat}`).toBe('sea');

  // Every region: a dot where its coordinates are, and its name beside it, inside the map.
  for (const [name, { location: [lat, lon] }] of Object.entries(SEED_REGIONS)) {
    const mark = page.locator(`#marks g.region[data-region="${name}"]`);
    expect(await mark.locator('text').textContent()).toBe(name);
    const label = await mark.locator('text').evaluate((t) => t.getBoundingClientRect().toJSON() as DOMRect);
    expect(label.left >= map.left && label.right <= map.right && label.top >= map.top && label.bottom <= map.bottom, `${name} label inside the map`).toBe(true);
    const dot = await mark.locator('circle.dot').evaluate((c) => c.getBoundingClientRect().toJSON() as DOMRect);
    const [x, y] = project(lon, lat);
    expect(dot.left + dot.width / 2).toBeCloseTo(map.left + (x / 1000) * map.width, 0);
    expect(dot.top + dot.height / 2).toBeCloseTo(map.top + (y / 400) * map.height, 0);
  }

  // Clients: bigger hotspots for more traffic, on top where they stand.
  const radius = (c: string): Promise<number> => page.locator(`#spots circle[data-country="${c}"]`).evaluate((el) => el.getBoundingClientRect().width);
  expect(await radius('SE')).toBeGreaterThan(1.4 * (await radius('GB')));
  expect(await radius('IT')).toBeGreaterThan(await radius('GB'));
  expect(await mapHit(page, -3.4, 55.4)).toBe('spot:GB');
  // Which region serves them, and the arcs of those GeoDNS sent here though another region is nearer.
  const flows = await page.locator('#flows line.flow').evaluateAll((ls) => ls.map((l) => `${l.getAttribute('data-country')}>${l.getAttribute('data-region')}`).sort());
  expect(flows).toEqual(['GB>eu-south', 'IT>eu-south', 'SE>eu-north', 'US>us-east', 'US>us-west']);
  const arcs = await page.locator('#arcs path.arc').evaluateAll((ps) => ps.map((p) => p.getAttribute('data-nearest')).sort());
  expect(arcs).toEqual(['eu-north', 'eu-south', 'us-west']);
  expect(await page.locator('#countries tr[data-country]').evaluateAll((rs) => rs.map((r) => r.getAttribute('data-country')))).toEqual(['SE', 'US', 'IT', 'GB']);

  await mkdir(SCREENSHOTS, { recursive: true });
  await page.locator('#map').screenshot({ path: join(SCREENSHOTS, 'map.png') });
  await page.close();
  expect(errors).toEqual([]);
});

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
  // A latency row per region, each with the RTT its boot probes measured.
  const latency = await page.locator('#latency tr[data-region]').evaluateAll((rows) => rows.map((r) => [r.getAttribute('data-region'), Number(r.getAttribute('data-rtt-ms')) > 0]));
  expect(latency.sort()).toEqual(Object.keys(SEED_REGIONS).map((r) => [r, true]).sort());
  // Latency order (the default): slowness, error share and the client areas won, per region; nothing moved here.
  const costCells = await page.locator('#latency tr[data-region]').evaluateAll((rows) => rows.map((r) => [...r.querySelectorAll('td')].slice(7).map((td) => td.textContent)));
  expect(costCells).toHaveLength(Object.keys(SEED_REGIONS).length);
  for (const [slowness, errors, areas] of costCells) {
    expect(slowness).toMatch(/^\d+(\.\d)? ms$/);
    expect(errors).toMatch(/^\d+(\.\d)? %$/);
    expect(areas).toBe('0');
  }

  // This instance: the pulsing marker on the map and the highlighted zone row.
  expect(await page.locator('#marks g.region[data-self]').getAttribute('data-region')).toBe('us-east');
  expect(await page.locator('#marks g.region[data-self] circle.ring').count()).toBe(1);
  expect(await page.locator('#zones tr.self').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-zone')))).toEqual(['us-east/az-1']);
  expect(await page.locator('#self').textContent()).toBe('us-east / az-1');
  expect(await page.locator('#ready').textContent()).toBe('ready');
  expect(await page.locator('#credit').textContent()).toBe(DBIP_CREDIT);
  // The demo listens on plain HTTP only.
  expect(await page.locator('#listeners tr[data-listener]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-listener')))).toEqual(['http']);
  expect(await page.locator('#certificates').textContent()).toBe('none: no HTTPS listener');

  const killed = backends.find((b) => b.region === 'eu-north' && b.zone === 'az-3')!;
  await killed.close();
  await page.waitForSelector('#zones tr[data-zone="eu-north/az-3"][data-health="down"]', { timeout: 10_000 });
  await page.waitForSelector('#marks g.region[data-region="eu-north"][data-health="warn"]', { timeout: 5_000 });
  expect(await page.locator(`#endpoints tr[data-endpoint="${killed.origin}"]`).getAttribute('data-state')).toBe('down');
  expect(await page.locator('#zones tr[data-zone="eu-north/az-1"]').getAttribute('data-health')).toBe('ok');

  await mkdir(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, 'dashboard.png'), fullPage: true });
  await page.close();
  expect(errors).toEqual([]);
});

test('lists each certificate with its names and expiry, flags the one with under 14 days left, and lists the listeners', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'meridian-dashboard-certs-'));
  const ca = makeCa(dir);
  const soon = makeCertificate(dir, { names: ['soon.example.test', '*.soon.example.test'], ca, days: 5 });
  const later = makeCertificate(dir, { names: ['later.example.test'], ca, days: 30 });
  const upstream = await startUpstream((_req, res) => res.end('ok'));
  const proxy = await startProxy([upstream.origin], {
    listen: [
      { protocol: 'https', host: '127.0.0.1', port: 0 },
      { name: 'lb', host: '127.0.0.1', port: 0, proxyProtocol: { trusted: ['192.0.2.0/24'] } },
    ],
    tls: { certificates: [{ cert: soon.certFile, key: soon.keyFile }, { cert: later.certFile, key: later.keyFile }] },
  });
  try {
    const page = await browser!.newPage({ viewport: { width: 1440, height: 1000 } });
    const errors = watchErrors(page);
    await page.goto(`http://127.0.0.1:${proxy.adminPort}/`);
    await page.waitForSelector('#certificates tr[data-certificate]', { timeout: 10_000 });

    const rows = await page.locator('#certificates tr[data-certificate]').evaluateAll((trs) =>
      trs.map((tr) => ({
        label: tr.getAttribute('data-certificate'),
        expiry: tr.getAttribute('data-expiry'),
        cells: [...tr.querySelectorAll('td')].map((td) => td.textContent),
        pill: tr.querySelector('.pill')?.getAttribute('class'),
      })),
    );
    // Whole days left, as /status counts them; the expiry shown in UTC to the minute.
    const shown = (made: { cert: string }): { expires: string; days: number } => {
      const notAfter = Date.parse(new X509Certificate(made.cert).validTo);
      return { expires: new Date(notAfter).toISOString().slice(0, 16).replace('T', ' '), days: Math.floor((notAfter - Date.now()) / 86_400_000) };
    };
    expect(shown(soon).days).toBe(4);
    expect(rows).toEqual([
      { label: 'soon.example.test', expiry: 'warn', cells: ['soon.example.test', 'soon.example.test, *.soon.example.test', shown(soon).expires, '\u26A0 4 days'], pill: 'pill warn' },
      { label: 'later.example.test', expiry: 'ok', cells: ['later.example.test', 'later.example.test', shown(later).expires, `${shown(later).days} days`], pill: 'pill ok' },
    ]);
    // Flagged in colour, not only in text: the pill of the expiring certificate is drawn in the warning colour.
    const colour = (label: string): Promise<string> => page.locator(`#certificates tr[data-certificate="${label}"] .pill`).evaluate((el) => getComputedStyle(el).color);
    expect(await colour('soon.example.test')).not.toBe(await colour('later.example.test'));

    const listeners = await page.locator('#listeners tr[data-listener]').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    // Each at the port it is bound to, not the configured 0.
    expect(listeners).toEqual([
      ['https', 'https', `127.0.0.1:${proxy.ports.https}`, '–', 'h2'],
      ['lb', 'http', `127.0.0.1:${proxy.ports.lb}`, 'required', '–'],
    ]);

    await mkdir(SCREENSHOTS, { recursive: true });
    await page.locator('#certificates').screenshot({ path: join(SCREENSHOTS, 'certificates.png') });
    await page.close();
    expect(errors).toEqual([]);
  } finally {
    await proxy.shutdown();
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('charts the probe RTT and check durations of every region, the one slow to answer probes with the longest bar', async () => {
  // Each upstream answers the health checks itself: the one in fallback-1 only after 85 ms.
  const servers = await Promise.all(
    [0, 85].map(async (delayMs) => {
      const server = createServer((req, res) => {
        req.resume();
        const timer = setTimeout(() => res.end('{"version":"test"}'), delayMs);
        res.on('close', () => clearTimeout(timer));
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      return server;
    }),
  );
  const origins = servers.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const proxy = await startProxy(origins, { health: { interval: '100ms', unhealthyInterval: '100ms', timeout: '1s' } });
  try {
    const page = await browser!.newPage({ viewport: { width: 1440, height: 1000 } });
    const errors = watchErrors(page);
    await page.goto(`http://127.0.0.1:${proxy.adminPort}/`);
    // Enough probes of the slow one that its median is a slow probe, whatever the first ones did.
    await page.waitForFunction(() => {
      const cell = document.querySelector('#latency tr[data-region="fallback-1"] td:nth-child(6)');
      return cell !== null && Number(/\d+/.exec(cell.getAttribute('title') ?? '')?.[0]) >= 5;
    }, undefined, { timeout: 10_000 });

    const rows = await page.locator('#latency tr[data-region]').evaluateAll((trs) =>
      trs.map((tr) => ({
        region: tr.getAttribute('data-region'),
        rttMs: Number(tr.getAttribute('data-rtt-ms')),
        bar: tr.querySelector('svg.bar rect.avg')!.getBoundingClientRect().width,
        cells: [...tr.querySelectorAll('td.num')].slice(0, 5).map((td) => td.textContent),
        self: tr.classList.contains('self'),
      })),
    );
    expect(rows.map((r) => [r.region, r.self])).toEqual([
      ['local', true],
      ['fallback-1', false],
    ]);
    const [local, slow] = rows;
    expect(slow.rttMs).toBeGreaterThanOrEqual(80);
    expect(local.rttMs).toBeLessThan(slow.rttMs);
    // One scale for every row: the slowest region's bar is the longest, in proportion to its RTT.
    expect(slow.bar).toBeGreaterThan(local.bar);
    expect(local.bar / slow.bar).toBeCloseTo(local.rttMs / slow.rttMs, 1);
    // Mean, lowest and highest RTT (one endpoint: all the same), then the checks' p50 and p99, in ms.
    const msOf = (text: string | null): number => Number(/^([\d.]+) ms$/.exec(text ?? '')?.[1]);
    expect(slow.cells.map(msOf).every((v) => v >= 80)).toBe(true);
    expect(msOf(local.cells[3])).toBeLessThan(80);

    await mkdir(SCREENSHOTS, { recursive: true });
    await page.locator('#latency').screenshot({ path: join(SCREENSHOTS, 'latency.png') });
    await page.close();
    expect(errors).toEqual([]);
  } finally {
    await proxy.shutdown();
    await Promise.all(servers.map((server) => closeServer(server)));
  }
});
