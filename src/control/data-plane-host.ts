// Where the data plane runs: on this thread (`workers: 1`, today's single-threaded proxy) or in worker threads
// (src/control/supervisor.ts). The control plane and main.ts see only this interface.
import type { ListenerAddress } from '../listen/listeners.ts';
import type { DataPlaneTarget } from './control-plane.ts';

/** One data-plane thread as `/status` shows it; the counts are the thread's row of the shared thread stats. */
export interface WorkerView {
  readonly slot: number;
  /** node's thread id; 0 for the main thread. */
  readonly threadId: number;
  readonly listening: boolean;
  /** Times this slot's worker was replaced. */
  readonly restarts: number;
  readonly requests: number;
  readonly connections: number;
  readonly websockets: number;
}

export interface DataPlaneHost extends DataPlaneTarget {
  /** `in-process` serves on the control plane's thread; `workers` in one worker thread per slot. */
  readonly mode: 'in-process' | 'workers';
  /** Opens the listeners; resolves with their addresses (in config order) once every thread accepts on each. */
  start(): Promise<readonly ListenerAddress[]>;
  /** Keep serving, but ask keep-alive clients to reconnect after their current response. */
  drain(): void;
  /** Stop accepting, let in-flight exchanges finish up to `timeoutMs`, end what is left. */
  close(timeoutMs: number): Promise<void>;
  workers(): readonly WorkerView[];
  /** Workers replaced since start. */
  readonly restarts: number;
}
