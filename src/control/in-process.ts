// The data plane on the control plane's own thread: `workers: 1`, and where reusePort is unavailable. Its observers
// (the metric recorder and the access log) subscribe here, before the listeners accept, so the first request counts.
import { ProxyServer } from '../proxy/server.ts';
import type { DataPlane } from '../proxy/plane.ts';
import { Listeners, type ListenerAddress } from '../listen/listeners.ts';
import { TrafficRecorder } from '../observe/recorder.ts';
import type { TrafficCatalog } from '../observe/traffic-tables.ts';
import { STAT, type ThreadStats } from '../observe/thread-stats.ts';
import type { ListenerStats } from '../observe/listener-stats.ts';
import { startAccessLog, type AccessLog, type LogDestination } from '../observe/access-log.ts';
import type { DataPlaneHost, WorkerView } from './data-plane-host.ts';

export class InProcessDataPlane implements DataPlaneHost {
  readonly mode = 'in-process';
  readonly restarts = 0;
  readonly recorder: TrafficRecorder;
  readonly #proxy: ProxyServer;
  readonly #listeners: Listeners;
  readonly #accessLog: AccessLog;
  readonly #stats: ThreadStats;

  /** `plane` is the control plane's first snapshot; this thread counts into row 0 of `stats` and `listenerStats`. */
  constructor(plane: DataPlane, catalog: TrafficCatalog, stats: ThreadStats, listenerStats: ListenerStats, accessLog?: LogDestination) {
    this.#proxy = new ProxyServer(plane);
    // The first snapshot's listeners are the ones the process starts with.
    this.#listeners = new Listeners(this.#proxy, plane.config.listen, plane.config.timeouts.handshake, listenerStats.row(0));
    this.#stats = stats;
    // Beside the catalog, so a record of a topology with a new zone or region widens the tables on the spot.
    this.recorder = new TrafficRecorder(catalog.describe(plane.config.topology), (topology) => catalog.describe(topology)).subscribe();
    this.#accessLog = startAccessLog({ plane: () => this.#proxy.plane }, accessLog);
  }

  publish(plane: DataPlane): void {
    this.#listeners.use(plane);
    this.#accessLog.reconfigure();
  }

  start(): Promise<readonly ListenerAddress[]> {
    return this.#listeners.listen(false, null);
  }

  drain(): void {
    this.#proxy.plane.traffic.draining = true;
  }

  async close(timeoutMs: number): Promise<void> {
    await this.#listeners.close(timeoutMs);
    this.recorder.close();
    await this.#accessLog.close();
  }

  workers(): readonly WorkerView[] {
    const stats = this.#stats;
    return [{ slot: 0, threadId: 0, listening: this.#listeners.listening, restarts: 0, requests: stats.get(0, STAT.requests), connections: stats.get(0, STAT.connections), websockets: stats.get(0, STAT.websockets) }];
  }
}
