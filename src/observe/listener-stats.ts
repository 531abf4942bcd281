// Per-listener tallies in shared memory: TLS handshakes by outcome and PROXY protocol refusals. Laid out like the
// thread stats (src/observe/thread-stats.ts): each data-plane thread writes only its own row, one block of slots per
// listener, and a scrape adds the rows up. The listener list is restart-only, so the layout never changes.

export const LISTENER_STAT = Object.freeze({
  /** Full handshakes, resumed sessions (a ticket or session id accepted), and handshakes that failed or timed out. */
  tlsNew: 0,
  tlsResumed: 1,
  tlsFailed: 2,
  /** Connections closed at accept: a peer outside `proxyProtocol.trusted`, or a missing, malformed or late PROXY header. */
  proxyRefused: 3,
});
const SLOTS = 4;

export class ListenerStats {
  readonly values: Float64Array<SharedArrayBuffer>;
  readonly listeners: number;

  /** Rows for `threads` threads of `listeners` listeners, or a view over a buffer another thread allocated. */
  constructor(listeners: number, source: number | SharedArrayBuffer) {
    this.listeners = listeners;
    this.values = new Float64Array(typeof source === 'number' ? new SharedArrayBuffer(source * listeners * SLOTS * 8) : source);
    if (this.values.length % (listeners * SLOTS) !== 0) throw new RangeError('listener stats buffer has the wrong size');
  }

  get buffer(): SharedArrayBuffer {
    return this.values.buffer;
  }

  /** What `thread` writes: `row[listener * 4 + LISTENER_STAT.x]`. */
  row(thread: number): Float64Array<SharedArrayBuffer> {
    const width = this.listeners * SLOTS;
    if (!Number.isInteger(thread) || thread < 0 || (thread + 1) * width > this.values.length) throw new RangeError(`no listener stats row for thread ${thread}`);
    return this.values.subarray(thread * width, (thread + 1) * width);
  }

  /** The process's total of one slot of one listener. */
  total(listener: number, stat: number): number {
    const width = this.listeners * SLOTS;
    let sum = 0;
    for (let at = listener * SLOTS + stat; at < this.values.length; at += width) sum += this.values[at];
    return sum;
  }
}

/** Where a listener's slot sits in a thread's row. */
export function listenerSlot(listener: number, stat: number): number {
  return listener * SLOTS + stat;
}
