// `meridian demo` end to end: the simulated regions answer through Meridian, uploads stream, realtime
// tunnels, a dead local zone fails over to its sibling, and the CLI starts, greets and stops cleanly.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import http2 from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startDemo, type Demo } from '../src/demo/run.ts';

const MiB = 1024 * 1024;

describe('the demo topology behind Meridian', () => {
  let demo: Demo;
  let base: string;
  beforeAll(async () => {
    demo = await startDemo({ listenPort: 0, adminPort: 0, httpsPort: 0, probePort: 0 });
    base = `127.0.0.1:${demo.meridian.proxyAddress.port}`;
  });
  afterAll(() => demo?.stop());

  it('answers /v1/health/version from us-east/az-1, the zone it plays', async () => {
    const res = await fetch(`http://${base}/v1/health/version`);
    expect([res.status, res.headers.get('content-type')]).toEqual([200, 'application/json']);
    expect([res.headers.get('x-meridian-region'), res.headers.get('x-meridian-zone')]).toEqual(['us-east', 'az-1']);
    expect(await res.json()).toEqual({ version: '1.7.4' });
  });

  it('echoes what Meridian forwarded', async () => {
    const res = await fetch(`http://${base}/v1/databases?limit=5`, { headers: { 'x-request-id': 'demo-echo-1' } });
    const expected = { region: 'us-east', zone: 'az-1', method: 'GET', path: '/v1/databases', query: { limit: '5' } };
    expect(await res.json()).toEqual({ ...expected, clientIp: '127.0.0.1', proto: 'http', requestId: 'demo-echo-1' });
  });

  it('counts a chunked 4 MiB upload byte for byte', async () => {
    const chunk = new Uint8Array(64 * 1024).fill(7);
    let left = 64; // 64 × 64 KiB = 4 MiB, sent chunked
    const body = new ReadableStream<Uint8Array>({ pull: (c) => (left-- > 0 ? c.enqueue(chunk) : c.close()) });
    const res = await fetch(`http://${base}/v1/storage/buckets/demo/files`, { method: 'POST', body, duplex: 'half' } as RequestInit);
    expect(await res.json()).toEqual({ region: 'us-east', zone: 'az-1', bytes: 4 * MiB });
  });

  it('speaks realtime at a backend: the connected event, then an echo', async () => {
    const backend = demo.backends.find((b) => b.region === 'eu-north' && b.zone === 'az-3')!;
    await expectRealtime(`${backend.origin.replace('http:', 'ws:')}/v1/realtime?project=demo&channels[]=files`, 'eu-north', 'az-3');
  });

  it('tunnels realtime through Meridian to us-east/az-1', async () => {
    await expectRealtime(`ws://${base}/v1/realtime?project=demo&channels[]=files`, 'us-east', 'az-1');
  });

  it('serves HTTPS and HTTP/2 with its self-signed localhost certificate, and tells the backend the scheme', async () => {
    const https = demo.meridian.listenerAddresses.find((l) => l.protocol === 'https')!;
    const session = http2.connect(`https://localhost:${https.port}`, { rejectUnauthorized: false });
    try {
      const stream = session.request({ ':path': '/v1/databases' });
      const [headers] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
      let text = '';
      for await (const chunk of stream) text += chunk;
      expect([headers[':status'], headers['x-meridian-region'], session.alpnProtocol]).toEqual([200, 'us-east', 'h2']);
      expect((session.socket as TLSSocket).getPeerCertificate().subjectaltname).toContain('DNS:localhost');
      expect(JSON.parse(text)).toMatchObject({ region: 'us-east', path: '/v1/databases', proto: 'https' });
    } finally {
      session.close();
    }
  });
});

describe('a dead local zone', () => {
  it('sends the next request to the sibling zone us-east/az-3', async () => {
    const demo = await startDemo({ listenPort: 0, adminPort: 0, httpsPort: 0, probePort: 0 });
    try {
      const url = `http://127.0.0.1:${demo.meridian.proxyAddress.port}/v1/health/version`;
      expect((await fetch(url)).headers.get('x-meridian-zone')).toBe('az-1');
      await demo.backends.find((b) => b.region === 'us-east' && b.zone === 'az-1')!.close();
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect([res.headers.get('x-meridian-region'), res.headers.get('x-meridian-zone')]).toEqual(['us-east', 'az-3']);
    } finally {
      await demo.stop();
    }
  });
});

describe('the meridian demo command', () => {
  const cli = fileURLToPath(new URL('../src/cli/index.ts', import.meta.url));

  function runCli(env: Record<string, string>): ChildProcess & { out: string; err: string } {
    const { MERIDIAN_REGION: _r, MERIDIAN_ZONE: _z, ...inherited } = process.env;
    const child = Object.assign(spawn(process.execPath, [cli, 'demo'], { env: { ...inherited, ...env } }), { out: '', err: '' });
    child.stdout!.on('data', (d: Buffer) => (child.out += d));
    child.stderr!.on('data', (d: Buffer) => (child.err += d));
    return child;
  }

  it('prints the banner, serves, and exits 0 on SIGTERM', async () => {
    const [port, adminPort, httpsPort, probePort] = await freePorts(4);
    const child = runCli({
      MERIDIAN_DEMO_PORT: String(port),
      MERIDIAN_DEMO_ADMIN_PORT: String(adminPort),
      MERIDIAN_DEMO_HTTPS_PORT: String(httpsPort),
      MERIDIAN_DEMO_PROBE_PORT: String(probePort),
    });
    const exited = once(child, 'exit');
    try {
      const banner = new Promise<void>((resolve) => child.stdout!.on('data', () => child.out.includes('Ctrl-C stops') && resolve()));
      await within(Promise.race([banner, exited.then(() => Promise.reject(new Error(child.err)))]), 10_000, 'banner');
      expect(child.err).toBe('');
      expect(child.out).toContain(`curl -i localhost:${port}/v1/health/version`);
      expect(child.out).toContain(`curl localhost:${probePort}/readyz`);
      expect(child.out).toContain(`curl localhost:${adminPort}/status`);
      expect(child.out).toContain(`curl -k --http2 -i https://localhost:${httpsPort}/v1/health/version`);
      const res = await fetch(`http://127.0.0.1:${port}/v1/health/version`);
      expect(res.headers.get('x-meridian-zone')).toBe('az-1');
      // The probe port answers readiness and nothing of the admin plane.
      expect(await (await fetch(`http://127.0.0.1:${probePort}/readyz`)).json()).toMatchObject({ status: 'ready' });
      expect((await fetch(`http://127.0.0.1:${probePort}/status`)).status).toBe(404);
      expect((await fetch(`http://127.0.0.1:${adminPort}/status`)).status).toBe(200);
      child.kill('SIGTERM');
      expect(await within(exited, 5_000, 'exit after SIGTERM')).toEqual([0, null]);
      expect(child.out).toContain('meridian: stopped');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('exits 1 with one line, not a stack trace, when its port is taken', async () => {
    const taken = await holdPort();
    const [adminPort, httpsPort, probePort] = await freePorts(3);
    const child = runCli({
      MERIDIAN_DEMO_PORT: String(taken.port),
      MERIDIAN_DEMO_ADMIN_PORT: String(adminPort),
      MERIDIAN_DEMO_HTTPS_PORT: String(httpsPort),
      MERIDIAN_DEMO_PROBE_PORT: String(probePort),
    });
    try {
      expect(await within(once(child, 'exit'), 10_000, 'exit')).toEqual([1, null]);
      const lines = child.err.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^meridian.*\\b${taken.port}\\b.*(EADDRINUSE|in use)`));
    } finally {
      child.kill('SIGKILL');
      taken.server.close();
    }
  });
});

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms).unref());
  return Promise.race([promise, timeout]);
}

async function expectRealtime(url: string, region: string, zone: string): Promise<void> {
  const ws = new WebSocket(url);
  try {
    const [connected] = await once(ws, 'message');
    expect(JSON.parse(String(connected))).toEqual({ type: 'connected', data: { channels: ['files'], user: null, region, zone } });
    ws.send('hello');
    const [event] = await once(ws, 'message');
    expect(JSON.parse(String(event))).toEqual({ type: 'event', data: { echo: 'hello', region, zone } });
  } finally {
    ws.terminate();
  }
}

/** A loopback port the OS just handed out, still held by `server`. */
async function holdPort(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, server };
}

/** Distinct loopback ports that were free a moment ago. */
async function freePorts(count: number): Promise<number[]> {
  const held = await Promise.all(Array.from({ length: count }, holdPort));
  await Promise.all(held.map(({ server }) => new Promise((resolve) => server.close(resolve))));
  return held.map(({ port }) => port);
}
