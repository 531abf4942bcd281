// A request body held in memory while it streams, so a failed attempt can be sent again: each attempt gets a fresh
// body that replays what has arrived and then follows the client's stream. The first attempt starts at once; holding
// only keeps references to the buffers node already made, and the client's backpressure follows the current attempt.
// Small bodies of idempotent requests (`retries.bufferBodyBytes`) and upload chunks (`uploads.*`) are held this way.
import type { IncomingMessage } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';

export class HeldBody {
  readonly #req: IncomingMessage;
  readonly #parts: Buffer[] = [];
  #complete = false;
  #current: PassThrough | null = null;

  constructor(req: IncomingMessage) {
    this.#req = req;
    req.on('data', this.#onData);
    req.once('end', this.#onEnd);
  }

  /**
   * The body for the next attempt. undici destroys an attempt's body when the attempt fails, never the client's
   * request: the request keeps flowing into the held parts, and the next attempt picks up from them.
   */
  attempt(): Readable {
    const body = new PassThrough();
    body.on('drain', this.#resume);
    for (const part of this.#parts) body.write(part);
    if (this.#complete) body.end();
    this.#current = body;
    // The client may have been paused for the attempt that failed; this one may take what comes next at once.
    if (!body.writableNeedDrain) this.#req.resume();
    return body;
  }

  /** The exchange is over: let go of the bytes and of the client's stream. */
  release(): void {
    this.#req.off('data', this.#onData);
    this.#req.off('end', this.#onEnd);
    this.#parts.length = 0;
    this.#current = null;
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#parts.push(chunk);
    const current = this.#current;
    if (current !== null && !current.destroyed && !current.write(chunk)) this.#req.pause();
  };

  readonly #onEnd = (): void => {
    this.#complete = true;
    const current = this.#current;
    if (current !== null && !current.destroyed) current.end();
  };

  readonly #resume = (): void => {
    this.#req.resume();
  };
}
