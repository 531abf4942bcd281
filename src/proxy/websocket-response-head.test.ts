// Parsing the upstream's answer head strictly, finding where it ends, and rendering the head relayed for a refusal.
import { describe, expect, test } from 'vitest';
import { headEnd, headerValue, parseAnswerHead, relayedHead } from './websocket-response-head.ts';

describe('headEnd', () => {
  test('finds the blank line, also when the search starts where it begins (3 bytes before an earlier chunk ended)', () => {
    const bytes = Buffer.from('HTTP/1.1 200 OK\r\na: b\r\n\r\nbody', 'latin1');
    expect(headEnd(bytes, 0)).toBe(bytes.length - 4);
    expect(headEnd(bytes, bytes.length - 8)).toBe(bytes.length - 4);
    expect(headEnd(bytes.subarray(0, bytes.length - 5), 0)).toBe(-1);
  });
});

describe('parseAnswerHead', () => {
  test('a 101 with its headers, names lower-cased, values trimmed and repeats kept', () => {
    const head = parseAnswerHead('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSet-Cookie: a=1\r\nset-cookie:  b=2 \t');
    expect(head).toEqual({ status: 101, reason: 'Switching Protocols', headers: ['upgrade', 'websocket', 'set-cookie', 'a=1', 'set-cookie', 'b=2'], bodyLength: 0 });
    expect(headerValue(head!, 'set-cookie')).toBe('a=1');
    expect(headerValue(head!, 'sec-websocket-accept')).toBeUndefined();
  });

  test.each([
    ['Content-Length', 'HTTP/1.1 400 Bad Request\r\nContent-Length: 12', 12],
    ['the same Content-Length twice', 'HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\ncontent-length: 3', 3],
    ['chunked: until the upstream closes', 'HTTP/1.1 426 Upgrade Required\r\nTransfer-Encoding: chunked', -1],
    ['no framing: until the upstream closes', 'HTTP/1.0 200 OK', -1],
    ['204, which has no body', 'HTTP/1.1 204 No Content\r\nContent-Length: 10', 0],
    ['304, which has no body', 'HTTP/1.1 304 Not Modified', 0],
    ['a status line without a reason', 'HTTP/1.1 403', -1],
  ])('body length from %s', (_name, text, length) => {
    expect(parseAnswerHead(text)?.bodyLength).toBe(length);
  });

  test.each([
    ['not HTTP', 'SSH-2.0-OpenSSH_9.6'],
    ['HTTP/2', 'HTTP/2 200'],
    ['a status out of range', 'HTTP/1.1 099 Low'],
    ['a line without a colon', 'HTTP/1.1 200 OK\r\nnot a header'],
    ['obs-fold', 'HTTP/1.1 200 OK\r\na: b\r\n  continued'],
    ['a space before the colon', 'HTTP/1.1 200 OK\r\nContent-Length : 5'],
    ['a bare LF inside a line', 'HTTP/1.1 200 OK\r\na: b\nContent-Length: 5'],
    ['a NUL in a value', 'HTTP/1.1 200 OK\r\na: b\x00c'],
    ['two different Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6'],
    ['a Content-Length that is not a number', 'HTTP/1.1 200 OK\r\nContent-Length: 5, 5'],
    ['Content-Length with Transfer-Encoding', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked'],
  ])('refuses %s', (_name, text) => {
    expect(parseAnswerHead(text)).toBeNull();
  });
});

describe('relayedHead', () => {
  test('drops hop-by-hop headers and those Connection names, keeps the framing, adds extras and closes', () => {
    const head = parseAnswerHead(
      'HTTP/1.1 426 Upgrade Required\r\nConnection: keep-alive, X-Hop, Content-Length\r\nKeep-Alive: timeout=5\r\nUpgrade: h2c\r\n' +
        'X-Hop: 1\r\nProxy-Authenticate: Basic\r\nContent-Length: 2\r\nSec-WebSocket-Version: 13',
    )!;
    expect(relayedHead(head, ['x-meridian-region', 'eu'])).toBe(
      'HTTP/1.1 426 Upgrade Required\r\ncontent-length: 2\r\nsec-websocket-version: 13\r\nx-meridian-region: eu\r\nconnection: close\r\n\r\n',
    );
  });

  test('names the status when the upstream gave no reason', () => {
    expect(relayedHead(parseAnswerHead('HTTP/1.1 403')!, null)).toBe('HTTP/1.1 403 Forbidden\r\nconnection: close\r\n\r\n');
  });
});
