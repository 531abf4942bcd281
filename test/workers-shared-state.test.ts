// With two data-plane worker threads, what must hold for the whole process holds for the whole process: the request
// counters a scrape adds up, passive ejection (decided once by the control plane, then obeyed by both workers), the
// circuit breaker's per-endpoint limit and the retry budget. Each test puts traffic on both workers at once, through
// real upstreams, and checks a number that per-thread state would get wrong (two workers' worth instead of one).
//
// The kernel hashes each new connection to one worker's listener. Where a test needs a known split, it opens idle
// connections first and reads off /status which worker accepted each (the slot whose open connections grew), so no
// request is spent finding out and the split does not depend on luck.
import { afterEach, describe, expect, test, vi } from 'vitest';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { connect, type Socket } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { json, parseRawResponse, send, startProxy, startUpstream, until, type Handler, type Overrides, type RawResponse, type RunningProxy, type Upstream } from './support/harness.ts';

const WORKERS = 2;

const upstreams: Upstream[] = [];
const proxies: RunningProxy[] = [];
const sockets: Socket[] = [];
/** Answers the upstreams still hold, so nothing waits on them at teardown. */
const releases: (() => void)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const release of releases.splice(0)) release();
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(proxies.splice(0).map((p) => p.shutdown()));
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
});

async function upstream(handler: Handler): Promise<Upstream> {
  const started = await startUpstream(handler);
  upstreams.push(started);
  return started;
}

/** An upstream that holds every request open (health checks apart, which the harness answers) until `release()`. */
async function holdingUpstream(): Promise<{ readonly upstream: Upstream; release(): void }> {
  const held: ServerResponse[] = [];
  const release = (): void => {
    for (const res of held.splice(0)) res.end('released');
  };
  releases.push(release);
  const started = await upstream((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    held.push(res);
  });
  return { upstream: started, release };
}

async function proxy(origins: readonly string[], overrides: Overrides = {}): Promise<RunningProxy> {
  const started = await startProxy(origins, overrides, { workers: WORKERS });
  proxies.push(started);
  return started;
}

interface ThreadView {
  readonly slot: number;
  readonly requests: number;
  readonly connections: number;
}

interface EndpointView {
  readonly origin: string;
  readonly usable: boolean;
  readonly timesEjected: number;
  readonly ejectedUntil: string | null;
  readonly inflight: number;
}

interface StatusView {
  readonly workers: { readonly mode: string; readonly threads: readonly ThreadView[] };
  readonly topology: { readonly regions: readonly { readonly zones: readonly { readonly endpoints: readonly EndpointView[] }[] }[] };
}

async function status(p: RunningProxy): Promise<StatusView> {
  return json(await send(p.adminPort, { path: '/status' })) as unknown as StatusView;
}

async function threads(p: RunningProxy): Promise<readonly ThreadView[]> {
  const { workers } = await status(p);
  expect(workers.mode).toBe('workers');
  expect(workers.threads).toHaveLength(WORKERS);
  return workers.threads;
}

function endpointStatus(report: StatusView, origin: string): EndpointView {
  const found = report.topology.regions.flatMap((r) => r.zones.flatMap((z) => z.endpoints)).find((e) => e.origin === origin);
  if (found === undefined) throw new Error(`no endpoint ${origin} in /status`);
  return found;
}

/** `{labels} → value` of one metric in a real scrape of the admin port. */
async function metric(p: RunningProxy, name: string): Promise<Record<string, number>> {
  const body = (await send(p.adminPort, { path: '/metrics' })).body.toString();
  const out: Record<string, number> = {};
  for (const line of body.split('\n')) {
    const match = /^(\w+)(\{.*\})? (\S+)$/.exec(line);
    if (match !== null && match[1] === name) out[match[2] ?? ''] = Number(match[3]);
  }
  return out;
}

const sum = (series: Record<string, number>): number => Object.values(series).reduce((a, b) => a + b, 0);

/**
 * Fresh connections to the proxy, `perWorker` accepted by each worker, nothing sent on them yet (index = slot).
 * Starts once no other client connection is open, so each one it opens is the only change /status can show; a
 * connection to a worker that already has its share is closed again.
 */
async function connectionsByWorker(p: RunningProxy, perWorker: number): Promise<Socket[][]> {
  await until(async () => (await threads(p)).every((t) => t.connections === 0), 'no client connection open');
  const byWorker: Socket[][] = Array.from({ length: WORKERS }, () => []);
  const open = Array<number>(WORKERS).fill(0);
  for (let opened = 0; byWorker.some((s) => s.length < perWorker); opened++) {
    if (opened >= perWorker * WORKERS * 10) throw new Error(`${opened} connections went ${byWorker.map((s) => s.length).join(' / ')} to the workers: the kernel does not spread them`);
    const socket = connect(p.port, '127.0.0.1');
    sockets.push(socket);
    // Held requests end with a cut connection at teardown; that must not be an uncaught error.
    socket.on('error', () => {});
    await once(socket, 'connect');
    const { slot } = await until(async () => {
      const grown = (await threads(p)).find((t) => t.connections > open[t.slot]);
      return grown && { slot: grown.slot };
    }, 'the worker that accepted a connection');
    if (byWorker[slot].length < perWorker) {
      byWorker[slot].push(socket);
      open[slot]++;
      continue;
    }
    socket.destroy();
    await until(async () => (await threads(p))[slot].connections === open[slot], `worker ${slot} to see a connection close`);
  }
  return byWorker;
}

/** One GET on a connection of `connectionsByWorker`, which it closes after the answer. */
function get(socket: Socket): Promise<RawResponse> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(`GET / HTTP/1.1\r\nHost: meridian.test\r\nConnection: close\r\n\r\n`);
  return closed.then(() => parseRawResponse(Buffer.concat(chunks)));
}

/** GETs on all `connections` at once: the answers as they come in, and all of them once each is answered. */
function getAll(connections: readonly Socket[]): { readonly answered: RawResponse[]; readonly all: Promise<RawResponse[]> } {
  const answered: RawResponse[] = [];
  const all = Promise.all(
    connections.map((socket) =>
      get(socket).then((reply) => {
        answered.push(reply);
        return reply;
      }),
    ),
  );
  // A test that fails early leaves held requests to be cut at teardown: that must not add an unhandled rejection.
  all.catch(() => {});
  return { answered, all };
}

describe('two workers, one process', () => {
  test('requests on many fresh connections are served by both workers, and the scrape counts each exactly once', async () => {
    const origin = await upstream((req, res) => {
      req.resume();
      res.end('ok');
    });
    const p = await proxy([origin.origin]);

    // The open-connections gauge is the sum of both workers' rows: idle connections on each show up, then leave.
    const idle = await connectionsByWorker(p, 2);
    expect((await threads(p)).map((t) => t.connections)).toEqual([2, 2]);
    expect(await metric(p, 'meridian_open_connections')).toMatchObject({ '{kind="http"}': 4 });
    for (const socket of idle.flat()) socket.destroy();

    // 200 GETs, each on its own connection (no agent), 50 at a time: the kernel spreads them over both listeners.
    const REQUESTS = 200;
    for (let batch = 0; batch < REQUESTS / 50; batch++) {
      const replies = await Promise.all(Array.from({ length: 50 }, () => send(p.port)));
      expect(replies.map((r) => r.status)).toEqual(Array(50).fill(200));
    }
    expect(origin.requests).toBe(REQUESTS);

    // A request is counted as its exchange closes, which can trail the client's last byte by a moment.
    await until(async () => sum(await metric(p, 'meridian_requests_total')) >= REQUESTS, 'the scrape to count every request');
    expect(sum(await metric(p, 'meridian_requests_total'))).toBe(REQUESTS);
    const served = (await threads(p)).map((t) => t.requests);
    expect(served.every((n) => n > 0), `requests per worker: ${served.join(' / ')}`).toBe(true);
    expect(served.reduce((a, b) => a + b, 0)).toBe(REQUESTS);

    await until(async () => (await metric(p, 'meridian_open_connections'))['{kind="http"}'] === 0, 'no open HTTP connection once the clients closed');
  });

  test('nothing crosses between the threads per request: 400 exchanges, each failing over once, take no message either way', async () => {
    const failing = await upstream((req, res) => {
      req.resume();
      res.writeHead(503).end('failing');
    });
    const origin = await upstream((req, res) => {
      req.resume();
      res.end('ok');
    });
    // Every GET fails once, is counted as a passive failure, retries and is served: the per-request work of both the
    // success and the failure path, with the budget and the threshold out of reach so every exchange does all of it.
    // Distance order: in latency order the failing region's error share is a cost the control plane publishes to the
    // workers once it moves (at most once a second, not per request), which would land in the count here.
    const p = await proxy([failing.origin, origin.origin], {
      retries: { budgetPercent: 100, minConcurrency: 100 },
      outlierDetection: { consecutiveFailures: 1_000_000 },
      routing: { order: 'distance' },
    });
    const before = (await threads(p)).map((t) => t.requests);

    // Every message between the control plane and a worker passes through its Worker object on this thread.
    const fromWorkers = vi.spyOn(Worker.prototype, 'emit');
    const toWorkers = vi.spyOn(Worker.prototype, 'postMessage');
    const started = performance.now();
    const REQUESTS = 400;
    for (let batch = 0; batch < REQUESTS / 50; batch++) {
      const replies = await Promise.all(Array.from({ length: 50 }, () => send(p.port)));
      expect(replies.map((r) => r.body.toString())).toEqual(Array(50).fill('ok'));
    }
    const seconds = (performance.now() - started) / 1000;
    const received = fromWorkers.mock.calls.filter(([event]) => event === 'message').map(([, message]) => (message as { kind: string }).kind);
    const posted = toWorkers.mock.calls.map(([message]) => (message as { kind: string }).kind);
    vi.restoreAllMocks();

    expect(failing.requests).toBe(REQUESTS);
    const served = (await threads(p)).map((t, slot) => t.requests - before[slot]);
    expect(served.every((n) => n > 0), `requests per worker: ${served.join(' / ')}`).toBe(true);
    // The watchdog's ping to each worker about once a second, and its answer: nothing else, and nothing that grows
    // with the requests.
    expect(received.filter((kind) => kind !== 'pong')).toEqual([]);
    expect(posted.filter((kind) => kind !== 'ping')).toEqual([]);
    expect(received.length, `${received.length} messages in ${seconds.toFixed(1)} s`).toBeLessThanOrEqual(WORKERS * (Math.ceil(seconds) + 1));
  });

  test('a scrape has the same series with one thread or two workers, and the same request counts for the same traffic', async () => {
    const origin = await upstream((req, res) => {
      req.resume();
      res.writeHead(req.url === '/missing' ? 404 : 200).end('ok');
    });
    /** Every `meridian_*` sample of a scrape after the same mix: 30 GETs, 10 POSTs, 10 GETs answered 404. */
    const afterTraffic = async (p: RunningProxy): Promise<string> => {
      for (let batch = 0; batch < 5; batch++) {
        await Promise.all([
          ...Array.from({ length: 6 }, () => send(p.port)),
          ...Array.from({ length: 2 }, () => send(p.port, { method: 'POST', body: 'x' })),
          ...Array.from({ length: 2 }, () => send(p.port, { path: '/missing' })),
        ]);
      }
      await until(async () => sum(await metric(p, 'meridian_requests_total')) >= 50, 'the scrape to count every request');
      return (await send(p.adminPort, { path: '/metrics' })).body.toString();
    };
    const one = await startProxy([origin.origin]);
    proxies.push(one);
    const two = await proxy([origin.origin]);
    const [single, workers] = [await afterTraffic(one), await afterTraffic(two)];
    expect(json(await send(one.adminPort, { path: '/status' })).workers).toMatchObject({ mode: 'in-process' });
    expect((await threads(two)).every((t) => t.requests > 0)).toBe(true);

    // Series are compared by name and labels; the endpoint label is the same upstream in both.
    const series = (body: string): string[] => body.split('\n').filter((line) => line.startsWith('meridian_')).map((line) => line.slice(0, line.lastIndexOf(' '))).sort();
    expect(series(workers)).toEqual(series(single));
    const counts = (body: string): string[] => body.split('\n').filter((line) => line.startsWith('meridian_requests_total'));
    expect(counts(workers).sort()).toEqual(counts(single).sort());
  });

  test('passive ejection is decided once for the process and obeyed by both workers', async () => {
    const local = await upstream((req, res) => {
      req.resume();
      res.writeHead(503).end('local is failing');
    });
    const fallback = await upstream((req, res) => {
      req.resume();
      res.end('fallback');
    });
    // The default retry budget (3 exchanges retrying at once) lets every one of these one-at-a-time GETs retry.
    const p = await proxy([local.origin, fallback.origin], { outlierDetection: { consecutiveFailures: 6, baseEjection: '30s' } });

    // Six GETs, one at a time, alternating workers. Each tries the local endpoint first (one failure counted there,
    // into the shared counter) and, a 503 on a GET being retried, gets the fallback's 200: exactly one request
    // reaches the local upstream per GET. Each worker sees only 3 failures, so per-worker counters never reach 6.
    const [first, second] = await connectionsByWorker(p, 3);
    for (let i = 0; i < 3; i++) {
      for (const socket of [first[i], second[i]]) {
        const reply = await get(socket);
        expect([reply.status, reply.body]).toEqual([200, 'fallback']);
      }
      expect(local.requests).toBe(2 * (i + 1));
    }
    expect(fallback.requests).toBe(6);
    expect((await threads(p)).map((t) => t.requests)).toEqual([3, 3]);
    expect(await metric(p, 'meridian_retries_total')).toMatchObject({ '{reason="upstream_5xx"}': 6 });

    // The run reached the threshold across both workers: one report, one ejection.
    const localSeries = (series: Record<string, number>): number => sum(Object.fromEntries(Object.entries(series).filter(([labels]) => labels.includes(`endpoint="${local.origin}"`))));
    await until(async () => localSeries(await metric(p, 'meridian_ejections_total')) >= 1, 'the local endpoint to be ejected');
    const ejections = await metric(p, 'meridian_ejections_total');
    expect(localSeries(ejections)).toBe(1);
    expect(sum(ejections)).toBe(1);
    const ejected = endpointStatus(await status(p), local.origin);
    expect(ejected).toMatchObject({ usable: false, timesEjected: 1 });
    expect(ejected.ejectedUntil).not.toBeNull();

    // Both workers now route around it: fresh connections on each get the fallback without touching the local upstream.
    const [third, fourth] = await connectionsByWorker(p, 3);
    for (const socket of [...third, ...fourth]) {
      const reply = await get(socket);
      expect([reply.status, reply.body]).toEqual([200, 'fallback']);
    }
    expect(local.requests).toBe(6);
    expect(fallback.requests).toBe(12);
    expect((await threads(p)).map((t) => t.requests)).toEqual([6, 6]);
    expect(await metric(p, 'meridian_retries_total')).toMatchObject({ '{reason="upstream_5xx"}': 6 });
  });

  test('a burst of concurrent failures on both workers ejects the endpoint once: failures still in flight after the ejection do not eject it again', async () => {
    const held: ServerResponse[] = [];
    const release = (): void => {
      for (const res of held.splice(0)) res.writeHead(503).end('failing');
    };
    releases.push(release);
    const holding = await upstream((req, res) => {
      req.resume();
      held.push(res);
    });
    const p = await proxy([holding.origin], { outlierDetection: { consecutiveFailures: 3, baseEjection: '30s' } });
    // 15 requests held on each worker, then all answered 503 at once: 30 failures race into the shared counter from
    // both threads, ten times the threshold, several crossing it while the first report is on its way.
    const byWorker = await connectionsByWorker(p, 15);
    const { all } = getAll(byWorker.flat());
    await until(() => holding.requests === 30, 'all 30 requests to be held upstream');
    release();
    await all;
    await until(async () => sum(await metric(p, 'meridian_ejections_total')) >= 1, 'the endpoint to be ejected');
    // Give a second, wrong ejection every chance to land before counting.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(sum(await metric(p, 'meridian_ejections_total'))).toBe(1);
    expect(endpointStatus(await status(p), holding.origin)).toMatchObject({ usable: false, timesEjected: 1 });
  });

  test('the circuit breaker limits an endpoint’s concurrent requests across both workers', async () => {
    const { upstream: holding, release } = await holdingUpstream();
    const p = await proxy([holding.origin], { circuitBreaker: { maxRequests: 10 } });

    // 15 requests on each worker at once: each worker alone is over the limit, so per-worker slots would let 20 in.
    const byWorker = await connectionsByWorker(p, 15);
    const { answered, all } = getAll(byWorker.flat());
    // Settled: every request is either held upstream or answered by Meridian.
    await until(() => answered.length + holding.requests === 30, 'each request to be held upstream or refused');
    expect(holding.requests).toBe(10);
    expect(answered).toHaveLength(20);
    for (const reply of answered) {
      expect(reply.status).toBe(503);
      expect(JSON.parse(reply.body)).toMatchObject({ code: 503, type: 'meridian_upstream_overloaded' });
    }
    expect((await threads(p)).map((t) => t.requests)).toEqual([15, 15]);
    expect(endpointStatus(await status(p), holding.origin).inflight).toBe(10);

    release();
    const completed = (await all).filter((r) => r.status === 200);
    expect(completed).toHaveLength(10);
    for (const reply of completed) expect(reply.body).toBe('released');
    await until(async () => endpointStatus(await status(p), holding.origin).inflight === 0, 'the endpoint’s slots to be given back');
  });

  test('the retry budget counts the retrying exchanges of both workers together', async () => {
    const failing = await upstream((req, res) => {
      req.resume();
      // Framed by length, so the raw client reads the relayed body as it was sent.
      res.writeHead(503, { 'content-length': 7 }).end('failing');
    });
    const { upstream: holding, release } = await holdingUpstream();
    // budgetPercent 0: the budget is minConcurrency alone, 2 exchanges retrying at once in the process. A retried
    // exchange counts until it closes, and the holding endpoint keeps the admitted ones open. Ejection is out of
    // the way, or the failing endpoint would leave the candidates after a few 503s and later GETs would go straight
    // to the holding one without retrying.
    const p = await proxy([failing.origin, holding.origin], {
      retries: { budgetPercent: 0, minConcurrency: 2 },
      outlierDetection: { consecutiveFailures: 1_000 },
    });

    // 6 GETs on each worker at once: per-worker budgets would admit 2 retries on each, 4 in all.
    const byWorker = await connectionsByWorker(p, 6);
    const { answered, all } = getAll(byWorker.flat());
    // Settled: each GET either was admitted to retry (and is held) or got the failing endpoint's 503 as it is.
    await until(() => answered.length + holding.requests === 12, 'each GET to be held after a retry or answered');
    expect(failing.requests).toBe(12);
    expect(holding.requests).toBe(2);
    expect(answered.map((r) => [r.status, r.body])).toEqual(Array(10).fill([503, 'failing']));
    expect((await threads(p)).map((t) => t.requests)).toEqual([6, 6]);
    // Retries are counted as they are sent; the refused ones are not retries.
    expect(await metric(p, 'meridian_retries_total')).toMatchObject({ '{reason="upstream_5xx"}': 2 });

    release();
    expect((await all).filter((r) => r.status === 200).map((r) => r.body)).toEqual(['released', 'released']);
  });
});
