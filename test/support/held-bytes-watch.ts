// The high-water mark of the upload chunk bytes a Meridian process holds for retries. A thread of its own reads the
// process-wide count (Traffic.heldBytes, shared memory every data-plane thread writes) every ~0.1 ms, so the peak is
// seen however busy the test's own thread is with the upload: a chunk's bytes stay held while it streams, far longer.
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { Traffic } from '../../src/proxy/plane.ts';

interface WatchInput {
  readonly traffic: SharedArrayBuffer;
  /** Int32 slot 0: set to 1 to stop. */
  readonly stop: SharedArrayBuffer;
}

export interface HeldBytesWatch {
  /** Stops watching; resolves to the most bytes held at once, and how many readings were taken. */
  stop(): Promise<{ readonly peakBytes: number; readonly readings: number }>;
}

/** Starts watching the process whose `runtime.traffic.buffer` this is; resolves once the watcher runs. */
export async function watchHeldBytes(traffic: SharedArrayBuffer): Promise<HeldBytesWatch> {
  const stop = new SharedArrayBuffer(4);
  const worker = new Worker(new URL(import.meta.url), { workerData: { traffic, stop } satisfies WatchInput });
  const ready = Promise.withResolvers<void>();
  const done = Promise.withResolvers<{ peakBytes: number; readings: number }>();
  worker.on('message', (message: unknown) => {
    if (message === 'ready') ready.resolve();
    else done.resolve(message as { peakBytes: number; readings: number });
  });
  worker.once('error', (err) => {
    ready.reject(err);
    done.reject(err);
  });
  await ready.promise;
  return {
    stop: async () => {
      Atomics.store(new Int32Array(stop), 0, 1);
      const answer = await done.promise;
      await worker.terminate();
      return answer;
    },
  };
}

if (!isMainThread && parentPort !== null && (workerData as Partial<WatchInput>)?.stop !== undefined) {
  const { traffic, stop } = workerData as WatchInput;
  const view = new Traffic(traffic);
  const stopped = new Int32Array(stop);
  const nap = new Int32Array(new SharedArrayBuffer(4));
  let peakBytes = 0;
  let readings = 0;
  parentPort.postMessage('ready');
  while (Atomics.load(stopped, 0) === 0) {
    const held = view.heldBytes;
    if (held > peakBytes) peakBytes = held;
    readings++;
    Atomics.wait(nap, 0, 0, 0.1);
  }
  parentPort.postMessage({ peakBytes, readings });
}
