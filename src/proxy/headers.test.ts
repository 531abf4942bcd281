// The upstream header list as a pure function of node's parsed headers and the forwarding facts: what Connection may
// and may not remove, which client-address headers a peer that is not trusted loses, and the WebSocket exceptions;
// and the downstream list, one array reused for every response.
import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, test } from 'vitest';
import { downstreamResponseHeaders, namedByConnection, upstreamRequestHeaders, type ForwardingFacts } from './headers.ts';

const CLIENT_ADDRESS_HEADERS: ReadonlySet<string> = new Set(['x-real-ip', 'forwarded', 'true-client-ip', 'x-client-ip', 'cf-connecting-ip', 'x-edge-ip']);

function facts(overrides: Partial<ForwardingFacts> = {}): ForwardingFacts {
  return {
    clientIp: '203.0.113.7',
    peerIp: '203.0.113.7',
    trustedPeer: false,
    clientAddressHeaders: CLIENT_ADDRESS_HEADERS,
    requestId: 'req-1',
    proto: 'http',
    forwardedHost: 'cloud.example.com',
    appendForwardedFor: false,
    ...overrides,
  };
}

/** The list as `name: value` lines, in order, for readable expectations. */
function lines(headers: IncomingHttpHeaders, forwarding = facts(), keepUpgrade = false): string[] {
  const list = upstreamRequestHeaders(headers, forwarding, keepUpgrade);
  const out: string[] = [];
  for (let i = 0; i < list.length; i += 2) out.push(`${list[i]}: ${list[i + 1]}`);
  return out;
}

const OWN = ['x-forwarded-for: 203.0.113.7', 'x-forwarded-proto: http', 'x-request-id: req-1', 'x-forwarded-host: cloud.example.com'];

describe('Connection', () => {
  test.each([
    ['keep-alive, Host', { host: 'cloud.example.com', connection: 'keep-alive, Host' }, ['host: cloud.example.com', ...OWN]],
    ['naming our forwarding headers', { host: 'a', connection: 'X-Forwarded-For, X-Request-Id, X-Forwarded-Proto, X-Forwarded-Host', 'x-request-id': 'client' }, ['host: a', ...OWN]],
    ['close, x-foo', { host: 'a', connection: 'close, x-foo', 'x-foo': '1', 'x-bar': '2' }, ['host: a', 'x-bar: 2', ...OWN]],
    ['keep-alive, Host, X-Foo', { host: 'a', connection: 'keep-alive, Host, X-Foo', 'x-foo': '1' }, ['host: a', ...OWN]],
  ])('%s', (_, headers, expected) => {
    expect(lines(headers)).toEqual(expected);
  });

  test('the common values name nothing, so they cost no set', () => {
    for (const value of ['keep-alive', 'close', 'upgrade', undefined]) expect(namedByConnection(value)).toBeNull();
  });

  test('a WebSocket handshake keeps Upgrade and goes up with `Connection: upgrade` whatever the client listed', () => {
    const headers = { host: 'a', connection: 'keep-alive, Upgrade, Host, X-Forwarded-For, X-Foo', upgrade: 'websocket', 'x-foo': '1' };
    expect(lines(headers, facts(), true)).toEqual(['host: a', 'connection: upgrade', 'upgrade: websocket', ...OWN]);
    // Outside a WebSocket handshake both are hop-by-hop like any other.
    expect(lines(headers)).toEqual(['host: a', ...OWN]);
  });
});

describe('client-address headers', () => {
  const headers: IncomingHttpHeaders = {
    host: 'a',
    'x-real-ip': '198.51.100.1',
    forwarded: 'for=198.51.100.2, for=198.51.100.3',
    'true-client-ip': '198.51.100.4',
    'x-client-ip': '198.51.100.5',
    'cf-connecting-ip': '198.51.100.6',
    'x-edge-ip': '198.51.100.7',
    'x-end-to-end': 'kept',
  };

  test('are dropped when the peer is not a trusted proxy', () => {
    expect(lines(headers)).toEqual(['host: a', 'x-end-to-end: kept', ...OWN]);
  });

  test('pass as sent from a trusted proxy', () => {
    const trusted = lines(headers, facts({ trustedPeer: true }));
    expect(trusted).toEqual([...Object.entries(headers).map(([name, value]) => `${name}: ${value}`), ...OWN]);
  });
});

describe('the downstream list', () => {
  test('is reused from response to response, never keeping an earlier, longer answer\'s entries', () => {
    const long = downstreamResponseHeaders({ 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'], etag: '"x"', connection: 'close' }, ['x-meridian-region', 'r1']);
    expect([...long]).toEqual(['content-type', 'text/plain', 'set-cookie', 'a=1', 'set-cookie', 'b=2', 'etag', '"x"', 'x-meridian-region', 'r1']);
    expect([...downstreamResponseHeaders({ 'content-length': '5' }, null)]).toEqual(['content-length', '5']);
    expect([...downstreamResponseHeaders({ 'content-length': '5', 'cache-control': 'no-store' }, null)]).toEqual(['content-length', '5', 'cache-control', 'no-store']);
  });
});
