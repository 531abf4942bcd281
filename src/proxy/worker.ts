// A data-plane worker thread: the whole data plane (HTTP and WebSocket) on its own listeners, bound with reusePort so
// the kernel spreads connections across workers. It serves from the snapshots the control plane posts, counts into
// shared memory, and messages the control plane only for rare events, never per request.
import { parentPort, workerData } from 'node:worker_threads';
import { ProxyServer } from './server.ts';
import { Listeners } from '../listen/listeners.ts';
import { ListenerStats } from '../observe/listener-stats.ts';
import { buildConfig } from '../config/build.ts';
import { WorkerPlanes } from './worker-plane.ts';
import { startAccessLog } from '../observe/access-log.ts';
import type { FromWorker, PlaneSnapshot, ToWorker, WorkerInit } from './snapshot.ts';
import { releaseMemory, releaseStartupMemory } from '../control/release-memory.ts';

const port = parentPort;
if (port === null) throw new Error('src/proxy/worker.ts runs as a worker thread of the control plane');
const init = workerData as WorkerInit;
const send = (message: FromWorker): void => port.postMessage(message);

const planes = new WorkerPlanes(init, (tables, index, now) => send({ kind: 'threshold', tables, index, now }));
const proxy = new ProxyServer(planes.build(init.snapshot));
// workerData lives as long as the thread: holding the first snapshot would keep its geo databases resident after a
// reload replaced them.
(init as { snapshot: PlaneSnapshot | null }).snapshot = null;
const started = buildConfig(init.started);
const listeners = new Listeners(proxy, started.listen, started.timeouts.handshake, new ListenerStats(started.listen.length, init.listenerStats).row(init.slot));
const accessLog = startAccessLog({ plane: () => proxy.plane });
let closing: Promise<void> | undefined;

port.on('message', (message: ToWorker) => {
  switch (message.kind) {
    case 'snapshot': {
      let plane;
      try {
        plane = planes.build(message.snapshot);
      } catch (err) {
        // The control plane checked this config; a worker that cannot build it keeps the one it has, and says so.
        console.error(`meridian: worker ${init.slot} could not apply snapshot (config version ${message.snapshot.config.version}), it keeps the previous one:`, err);
        return;
      }
      listeners.use(plane);
      // Subscribes or unsubscribes only when the new config turned the log on or off.
      accessLog.reconfigure();
      if (planes.geoReplaced) {
        // The replaced databases' memory returns only once every thread has collected its wrappers of it. This pauses
        // the thread for one full collection (tens of ms for a 40 MiB heap on a busy 2-core machine), once per database
        // replacement. Workers taking turns (a delay per slot) left one replaced copy resident in
        // test/workers-memory.test.ts, so every thread collects as soon as it has swapped.
        planes.geoReplaced = false;
        setImmediate(releaseMemory);
      }
      return;
    }
    case 'ping':
      send({ kind: 'pong', seq: message.seq });
      return;
    case 'drain':
      // Keep-alive clients are told to reconnect (elsewhere) after their current response.
      proxy.plane.traffic.draining = true;
      return;
    case 'close':
      closing ??= close(message.timeoutMs);
      return;
    case 'crash':
      if (init.testHooks) setImmediate(() => {
        throw new Error(`test hook: worker ${init.slot} crashes`);
      });
      return;
    case 'hang':
      if (init.testHooks) {
        const until = Date.now() + message.ms;
        while (Date.now() < until);
      }
      return;
  }
});

async function close(timeoutMs: number): Promise<void> {
  await listeners.close(timeoutMs);
  planes.recorder.close();
  await accessLog.close();
  await planes.pools.close();
  planes.locator.close();
  send({ kind: 'closed' });
  port!.close();
}

// Loading the modules and building the first plane left garbage and a young generation grown for it, which an idle
// thread keeps committed; collected before the listeners open, no connection waits for the pause.
releaseStartupMemory();
listeners.listen(true, init.ports).then(
  (addresses) => send({ kind: 'listening', addresses }),
  (err: NodeJS.ErrnoException & { address?: string; port?: number; listener?: string }) =>
    send({ kind: 'failed', message: err.message, code: err.code, address: err.address ?? '', port: err.port ?? 0, listener: err.listener ?? '' }),
);
