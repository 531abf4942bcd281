import { describe, expect, test } from 'vitest';
import { compileConfig } from './compile.ts';
import { RESTART_ONLY_FIELDS, restartRequired } from './restart-only.ts';

const raw = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  self: { region: 'local', zone: 'az-1' },
  regions: { local: { location: [50.11, 8.68], zones: { 'az-1': { endpoints: ['http://127.0.0.1:1'] } } } },
  ...extra,
});
const started = compileConfig(raw({ listen: { host: '127.0.0.1', port: 8080 }, probe: {} }), {});

describe('restartRequired', () => {
  test.each([
    ['nothing restart-only changed', raw({ listen: { host: '127.0.0.1', port: 8080 }, probe: {}, timeouts: { requestHeaders: '1s' } }), []],
    ['the probe listener turned off', raw({ listen: { host: '127.0.0.1', port: 8080 } }), ['probe.host', 'probe.port']],
    ['the port', raw({ listen: { host: '127.0.0.1', port: 8081 }, probe: {} }), ['listen.port']],
    ['the header limit and the admin address', raw({ listen: { host: '127.0.0.1', port: 8080, maxHeaderBytes: 4096 }, admin: { host: '0.0.0.0', port: 9091 }, probe: {} }), ['listen.maxHeaderBytes', 'admin.host', 'admin.port']],
    ['the token only (it applies live)', raw({ listen: { host: '127.0.0.1', port: 8080 }, admin: { token: 'a-token-of-sixteen-chars' }, probe: {} }), []],
    ['a listener added to the list', raw({ listen: [{ host: '127.0.0.1', port: 8080 }, { protocol: 'redirect', port: 8081 }], probe: {} }), ['listen']],
    ['a PROXY protocol peer list, written as a one-item list', raw({ listen: [{ host: '127.0.0.1', port: 8080, proxyProtocol: { trusted: ['10.0.0.0/8'] } }], probe: {} }), ['listen.proxyProtocol']],
    ['the handshake timeout and the ticket key rotation', raw({ listen: { host: '127.0.0.1', port: 8080 }, probe: {}, timeouts: { handshake: '3s' }, tls: { ticketKeyRotation: '1h' } }), ['timeouts.handshake', 'tls.ticketKeyRotation']],
    ['the worker count', raw({ workers: 4, listen: { host: '127.0.0.1', port: 8080 }, probe: {} }), ['workers']],
    ['workers written out as the default it was', raw({ workers: 'auto', listen: { host: '127.0.0.1', port: 8080 }, probe: {} }), []],
  ])('%s', (_name, next, expected) => {
    expect(restartRequired(started, compileConfig(next, {}))).toEqual(expected);
  });

  test('every field it names is one the compiled config has', () => {
    for (const field of RESTART_ONLY_FIELDS) {
      const path = field.split('.');
      const key = path.pop()!;
      if (field === 'listen') continue;
      const section = path.reduce<Record<string, unknown>>((at, name) => at[name] as Record<string, unknown>, started as unknown as Record<string, unknown>);
      expect(Object.keys(section), field).toContain(key);
    }
  });
});
