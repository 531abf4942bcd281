// Which upgrade requests are WebSocket handshakes we forward, and the accept value an upstream must answer with.
import { describe, expect, test } from 'vitest';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { acceptFor, handshakeProblem } from './websocket-handshake.ts';

const VALID: IncomingHttpHeaders = {
  host: 'cloud.example.com',
  upgrade: 'websocket',
  connection: 'Upgrade',
  'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
  'sec-websocket-version': '13',
};

function request(headers: IncomingHttpHeaders, method = 'GET', minor = 1): IncomingMessage {
  const rawHeaders = Object.entries(headers).flatMap(([name, value]) => [name, String(value)]);
  return { method, httpVersionMajor: 1, httpVersionMinor: minor, headers, rawHeaders } as IncomingMessage;
}

function without(name: string): IncomingHttpHeaders {
  const headers = { ...VALID };
  delete headers[name];
  return headers;
}

describe('handshakeProblem', () => {
  test.each([
    ['the RFC 6455 example', VALID],
    ['mixed-case tokens', { ...VALID, upgrade: 'WebSocket', connection: 'UPGRADE' }],
    ["Firefox's Connection list", { ...VALID, connection: 'keep-alive, Upgrade' }],
    ['an explicit empty body', { ...VALID, 'content-length': '0' }],
  ])('accepts %s', (_name, headers) => {
    expect(handshakeProblem(request(headers))).toBeNull();
  });

  test.each([
    ['an h2c upgrade', request({ ...VALID, upgrade: 'h2c' }), /Only WebSocket/],
    ['two protocols offered', request({ ...VALID, upgrade: 'websocket, h2c' }), /Only WebSocket/],
    ['POST', request(VALID, 'POST'), /GET/],
    ['HTTP/1.0', request(VALID, 'GET', 0), /HTTP\/1\.1/],
    ['Connection without the upgrade token', request({ ...VALID, connection: 'keep-alive, upgraded' }), /Connection/],
    ['no Host', request(without('host')), /Host/],
    ['no key', request(without('sec-websocket-key')), /Key/],
    ['a key of 15 bytes', request({ ...VALID, 'sec-websocket-key': Buffer.alloc(15, 1).toString('base64') }), /Key/],
    ['a key of 17 bytes', request({ ...VALID, 'sec-websocket-key': Buffer.alloc(17, 1).toString('base64') }), /Key/],
    ['a key that is not base64', request({ ...VALID, 'sec-websocket-key': 'not a base64 key at all!' }), /Key/],
    ['two keys, which node joins with a comma', request({ ...VALID, 'sec-websocket-key': `${VALID['sec-websocket-key']}, ${VALID['sec-websocket-key']}` }), /Key/],
    ['no version', request(without('sec-websocket-version')), /Version 13/],
    ['version 8', request({ ...VALID, 'sec-websocket-version': '8' }), /Version 13/],
    ['a Content-Length body', request({ ...VALID, 'content-length': '5' }), /body/],
    ['a chunked body', request({ ...VALID, 'transfer-encoding': 'chunked' }), /body/],
  ])('refuses %s', (_name, req, message) => {
    expect(handshakeProblem(req)).toMatch(message);
  });
});

describe('acceptFor', () => {
  test('matches the example in RFC 6455 §1.3', () => {
    expect(acceptFor('dGhlIHNhbXBsZSBub25jZQ==')).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });
});
