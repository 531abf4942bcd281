// The worker supervisor: one data-plane worker thread per slot, all accepting on one port with reusePort. It posts
// every snapshot to every worker, hears their rare reports, replaces a worker that exits or stops answering, and
// drains them all at shutdown. A replacement takes its slot's stats row, so the process's counters carry on.
import { Worker } from 'node:worker_threads';
import type { ListenerAddress } from '../listen/listeners.ts';
import type { ParsedConfig } from '../config/schema.ts';
import type { DataPlane } from '../proxy/plane.ts';
import type { FromWorker, PlaneSnapshot, ToWorker, WorkerInit } from '../proxy/snapshot.ts';
import { STAT, type ThreadStats } from '../observe/thread-stats.ts';
import type { DataPlaneHost, WorkerView } from './data-plane-host.ts';

/**
 * The worker's module, in the form this one runs as: the TypeScript sources in development, the JavaScript build
 * (`npm run build`) in the container image, where no thread has to load the type stripper.
 */
const WORKER_ENTRY = new URL(`../proxy/worker${import.meta.url.slice(import.meta.url.lastIndexOf('.'))}`, import.meta.url);
/** A worker that dies within this long of starting is crash-looping: its next start waits, doubling up to the cap. */
const STABLE_AFTER_MS = 10_000;
const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5_000;
/** After the drain window, how long a worker has to report it closed before it is terminated. */
const CLOSE_GRACE_MS = 2_000;
/**
 * Each worker's young generation, in V8's terms (three semi-spaces' worth: 96 MiB is a 32 MiB semi-space). A proxy
 * allocates about 15 KiB of short-lived objects per request and keeps only what is in flight (a few hundred KiB survive
 * each scavenge whatever the size), so a scavenge costs about the same at any size and a larger space only makes them
 * rarer. Left to itself, V8 sizes it from the host (64 MiB semi-spaces, 128 MiB committed per thread, on a 24 GiB
 * machine). 32 MiB keeps scavenges to a few per second at 10k req/s per thread while bounding the committed young
 * generation at 64 MiB per thread; the Dockerfile gives the main thread the same (`--max-semi-space-size=32`).
 * bench/paced.ts measures it against V8's default.
 */
export const YOUNG_GENERATION_MB = 96;

export interface SupervisorOptions {
  readonly count: number;
  /** One row per slot. */
  readonly stats: ThreadStats;
  /** One row per slot, a block per listener (src/observe/listener-stats.ts). */
  readonly listenerStats: SharedArrayBuffer;
  /** One row per slot (src/observe/edge-stats.ts). */
  readonly edgeStats: SharedArrayBuffer;
  /** The config the process started with (its validated input): every worker, replacements too, opens its listeners. */
  readonly started: ParsedConfig;
  /** The process's exchange counters (retry budget). */
  readonly traffic: SharedArrayBuffer;
  /** A worker that has not answered a ping for this long is terminated and replaced. */
  readonly watchdogMs: number;
  readonly testHooks: boolean;
  readonly onThreshold: (tables: number, index: number, now: number) => void;
  /** A worker has exited: whatever it held in shared counts is to be given back. */
  readonly onExit: (slot: number) => void;
  readonly onRestart: () => void;
}

interface Slot {
  readonly index: number;
  worker: Worker | null;
  listening: boolean;
  startedAt: number;
  /** When the unanswered ping went out, or 0: only a ping waiting for its answer is timed, never a worker's boot. */
  pingedAt: number;
  restarts: number;
  backoffMs: number;
  /** Between a worker's death and its replacement listening: a replacement that fails is tried again. */
  replacing: boolean;
}

export class WorkerSupervisor implements DataPlaneHost {
  readonly mode = 'workers';
  readonly #options: SupervisorOptions;
  readonly #slots: Slot[];
  #snapshot: PlaneSnapshot | null = null;
  /** Each listener's port as the first worker bound it (a config's port 0 becomes the one every worker shares). */
  #ports: readonly number[] | null = null;
  #addresses: readonly ListenerAddress[] = [];
  #stopping = false;
  #watchdog: NodeJS.Timeout | undefined;
  #seq = 0;
  #restarts = 0;

  constructor(options: SupervisorOptions) {
    this.#options = options;
    this.#slots = Array.from({ length: options.count }, (_, index) => ({ index, worker: null, listening: false, startedAt: 0, pingedAt: 0, restarts: 0, backoffMs: 0, replacing: false }));
  }

  get restarts(): number {
    return this.#restarts;
  }

  publish(_plane: DataPlane, snapshot: PlaneSnapshot): void {
    this.#snapshot = snapshot;
    this.#broadcast({ kind: 'snapshot', snapshot });
  }

  /** The first worker binds (and picks the ports the config leaves at 0); the rest join it on those ports. */
  async start(): Promise<readonly ListenerAddress[]> {
    const [first, ...rest] = this.#slots;
    try {
      this.#addresses = await this.#spawn(first);
      this.#ports = this.#addresses.map((a) => a.port);
      await Promise.all(rest.map((slot) => this.#spawn(slot)));
    } catch (err) {
      await this.close(0);
      throw err;
    }
    const every = Math.max(50, Math.min(1_000, this.#options.watchdogMs / 4));
    this.#watchdog = setInterval(() => this.#checkAnswers(), every).unref();
    return this.#addresses;
  }

  drain(): void {
    this.#broadcast({ kind: 'drain' });
  }

  /** Each worker drains on its own (src/proxy/worker.ts); one that has not exited shortly after the window is ended. */
  async close(timeoutMs: number): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#watchdog);
    const exits = this.#slots.flatMap(({ worker }) => (worker === null ? [] : [new Promise((resolve) => worker.once('exit', resolve))]));
    this.#broadcast({ kind: 'close', timeoutMs });
    const deadline = setTimeout(() => {
      for (const { worker } of this.#slots) void worker?.terminate();
    }, timeoutMs + CLOSE_GRACE_MS);
    await Promise.all(exits);
    clearTimeout(deadline);
  }

  workers(): readonly WorkerView[] {
    const { stats } = this.#options;
    return this.#slots.map((slot) => ({
      slot: slot.index,
      threadId: slot.worker?.threadId ?? -1,
      listening: slot.listening,
      restarts: slot.restarts,
      requests: stats.get(slot.index, STAT.requests),
      connections: stats.get(slot.index, STAT.connections),
      websockets: stats.get(slot.index, STAT.websockets),
    }));
  }

  /** Test hooks only: ask a worker to crash (an uncaught exception) or to stop answering for `ms`. */
  poke(slot: number, message: Extract<ToWorker, { kind: 'crash' | 'hang' }>): void {
    this.#slots[slot].worker?.postMessage(message);
  }

  /** Resolves once the worker listens; rejects when it cannot (the port is taken, say) or dies first. */
  #spawn(slot: Slot): Promise<readonly ListenerAddress[]> {
    const { stats, listenerStats, edgeStats, traffic, testHooks, started } = this.#options;
    const init: WorkerInit = { slot: slot.index, stats: stats.buffer, listenerStats, edgeStats, traffic, snapshot: this.#snapshot!, started, ports: this.#ports, testHooks };
    const worker = new Worker(WORKER_ENTRY, { workerData: init, name: `meridian-worker-${slot.index}`, resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB } });
    slot.worker = worker;
    slot.listening = false;
    slot.startedAt = Date.now();
    slot.pingedAt = 0;
    return new Promise((resolve, reject) => {
      worker.on('message', (message: FromWorker) => {
        switch (message.kind) {
          case 'listening':
            slot.listening = true;
            slot.replacing = false;
            resolve(message.addresses);
            return;
          case 'failed':
            // Shaped like node's own listen error, so callers report it the same way whichever thread listened.
            reject(Object.assign(new Error(`worker ${slot.index}: ${message.message}`), { code: message.code, address: message.address, port: message.port, listener: message.listener }));
            void worker.terminate();
            return;
          case 'threshold':
            this.#options.onThreshold(message.tables, message.index, message.now);
            return;
          case 'pong':
            slot.pingedAt = 0;
            return;
          case 'closed':
            return;
        }
      });
      worker.on('error', (err) => {
        if (!this.#stopping) console.error(`meridian: worker ${slot.index} crashed:`, err);
        reject(err);
      });
      worker.on('exit', (code) => {
        const served = slot.listening;
        slot.worker = null;
        slot.listening = false;
        this.#options.onExit(slot.index);
        reject(new Error(`worker ${slot.index} exited with code ${code} before it listened`));
        // At startup a worker that cannot listen fails the start; after it, every death is replaced.
        if (this.#stopping) return;
        if (served) this.#replace(slot, true);
        else if (slot.replacing) this.#replace(slot, false);
      });
    });
  }

  /** `died`: a serving worker ended (counted as a restart); otherwise its replacement failed and is tried again. */
  #replace(slot: Slot, died: boolean): void {
    slot.replacing = true;
    if (died) {
      this.#restarts++;
      slot.restarts++;
      this.#options.onRestart();
      // Its connections died with it; its counters stay, and the replacement adds to them.
      this.#options.stats.resetGauges(slot.index);
    }
    const crashLooping = Date.now() - slot.startedAt < STABLE_AFTER_MS;
    slot.backoffMs = crashLooping ? Math.min(MAX_BACKOFF_MS, Math.max(FIRST_BACKOFF_MS, slot.backoffMs * 2)) : 0;
    console.error(`meridian: replacing worker ${slot.index}${slot.backoffMs > 0 ? ` in ${slot.backoffMs} ms` : ''}`);
    setTimeout(() => {
      if (this.#stopping) return;
      // A failure ends that worker too, and its exit tries again, later each time.
      this.#spawn(slot).catch((err: Error) => console.error(`meridian: worker ${slot.index} did not come back: ${err.message}`));
    }, slot.backoffMs);
  }

  /** A worker whose event loop is stuck cannot answer; it is ended, and `exit` replaces it. */
  #checkAnswers(): void {
    const now = Date.now();
    for (const slot of this.#slots) {
      const { worker } = slot;
      if (worker === null || !slot.listening) continue;
      if (slot.pingedAt === 0) {
        slot.pingedAt = now;
        worker.postMessage({ kind: 'ping', seq: ++this.#seq } satisfies ToWorker);
      } else if (now - slot.pingedAt > this.#options.watchdogMs) {
        console.error(`meridian: worker ${slot.index} has not answered a ping for ${now - slot.pingedAt} ms; ending it`);
        slot.pingedAt = 0;
        void worker.terminate();
      }
    }
  }

  #broadcast(message: ToWorker): void {
    for (const { worker } of this.#slots) worker?.postMessage(message);
  }
}
