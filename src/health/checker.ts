// Active health checks: a GET per endpoint on a jittered interval, faster while the endpoint is down.
import http from 'node:http';
import https from 'node:https';
import type { Endpoint, MeridianConfig } from '../config/types.ts';
import type { HealthState } from './state.ts';
import { healthCheck } from './events.ts';

/** The `health` section of the config: path, Host header, expected statuses, intervals, timeout, rise/fall. */
export type CheckSettings = MeridianConfig['health'];

export type CheckResult = 'success' | 'failure' | 'timeout';

/** Message of the `meridian:health:check` channel. */
export interface CheckEvent {
  readonly endpoint: Endpoint;
  readonly result: CheckResult;
  /**
   * From sending the probe to its result, whatever the result: a pass's whole answer, a failure when it came (a
   * refused connection, a bad status), a timeout at `health.timeout`. A pass's duration is also its RTT sample.
   */
  readonly durationMs: number;
}

/** ±10 %: spreads probes from many instances so endpoints never see them in lockstep. */
const JITTER = 0.1;

export class ActiveChecker {
  readonly #endpoints: readonly Endpoint[];
  readonly #state: HealthState;
  readonly #settings: CheckSettings;
  readonly #timers: (NodeJS.Timeout | undefined)[] = [];
  readonly #agents = { http: new http.Agent({ keepAlive: true, maxSockets: 1 }), https: new https.Agent({ keepAlive: true, maxSockets: 1 }) };
  #stopped = false;

  constructor(endpoints: readonly Endpoint[], state: HealthState, settings: CheckSettings) {
    this.#endpoints = endpoints;
    this.#state = state;
    this.#settings = settings;
  }

  start(): void {
    for (const endpoint of this.#endpoints) this.#probe(endpoint);
  }

  stop(): void {
    this.#stopped = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#agents.http.destroy();
    this.#agents.https.destroy();
  }

  #schedule(endpoint: Endpoint): void {
    if (this.#stopped) return;
    const base = this.#state.up[endpoint.index] ? this.#settings.interval : this.#settings.unhealthyInterval;
    const delay = base * (1 - JITTER + 2 * JITTER * Math.random());
    const timer = setTimeout(() => this.#probe(endpoint), delay);
    timer.unref();
    this.#timers[endpoint.index] = timer;
  }

  #probe(endpoint: Endpoint): void {
    const { path, host, expectStatus, timeout } = this.#settings;
    const started = performance.now();
    let settled = false;
    const finish = (result: CheckResult, detail: string): void => {
      if (settled) return;
      settled = true;
      const durationMs = performance.now() - started;
      const ok = result === 'success';
      this.#state.probe(endpoint.index, ok, ok ? durationMs : null, Date.now(), detail);
      if (healthCheck.hasSubscribers) healthCheck.publish({ endpoint, result, durationMs } satisfies CheckEvent);
      this.#schedule(endpoint);
    };
    const client = endpoint.tls ? https : http;
    const req = client.request({
      hostname: endpoint.hostname,
      port: endpoint.port,
      path,
      method: 'GET',
      agent: endpoint.tls ? this.#agents.https : this.#agents.http,
      headers: { host: host ?? hostHeader(endpoint), 'user-agent': 'meridian-health-check' },
      timeout,
    });
    req.on('response', (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      const ok = status >= expectStatus[0] && status <= expectStatus[1];
      res.on('end', () => finish(ok ? 'success' : 'failure', `status ${status}`));
      res.on('error', (err) => finish('failure', err.message));
    });
    req.on('timeout', () => {
      finish('timeout', `no answer within ${timeout} ms`);
      req.destroy();
    });
    req.on('error', (err: NodeJS.ErrnoException) => finish('failure', err.code ?? err.message));
    req.end();
  }
}

function hostHeader(endpoint: Endpoint): string {
  const host = endpoint.hostname.includes(':') ? `[${endpoint.hostname}]` : endpoint.hostname;
  const defaultPort = endpoint.tls ? 443 : 80;
  return endpoint.port === defaultPort ? host : `${host}:${endpoint.port}`;
}
