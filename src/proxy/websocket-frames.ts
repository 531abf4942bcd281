// Message boundaries in a tunnel's server-to-client bytes (RFC 6455 §5.2), read from frame headers alone, so that
// shutdown can put its close frame between two messages and never inside one.

/** Close frame 1001 Going Away, without a reason; unmasked, as every frame a server sends is. */
export const GOING_AWAY_FRAME: Buffer = Buffer.from([0x88, 0x02, 0x03, 0xe9]);

const OPCODE_CLOSE = 0x8;

/**
 * A few integers carried across chunks. Payloads are skipped by their length and never looked at, so a chunk costs
 * a handful of operations plus a few per frame header; nothing is buffered or allocated.
 */
export class FrameTracker {
  /** Header bytes read of the frame being parsed; 0 between frames and while in a payload. */
  #headerRead = 0;
  /** The header's whole length, and where its extended payload length ends; both known from its second byte. */
  #headerLength = 2;
  #lengthEnd = 2;
  /** Payload bytes of the current frame still to come; while its header is being read, the length so far. */
  #payloadLeft = 0;
  #firstByte = 0;
  /** Between a data frame without FIN and the continuation frame that has it; control frames may come in between. */
  #fragmented = false;
  /** The upstream sent a close frame of its own, so no other may follow it. */
  closeSeen = false;

  /** True between two messages: no frame is part-way through and no fragmented message is open. */
  get atMessageBoundary(): boolean {
    return this.#headerRead === 0 && this.#payloadLeft === 0 && !this.#fragmented;
  }

  /** Follows the frames of one whole chunk. */
  advance(chunk: Buffer): void {
    this.#scan(chunk, false);
  }

  /**
   * Follows the frames of `chunk` up to the first message boundary in it and returns the offset just past that
   * boundary (0 when already at one); -1 when the chunk ends inside a message, having followed all of it.
   */
  boundaryIn(chunk: Buffer): number {
    return this.atMessageBoundary ? 0 : this.#scan(chunk, true);
  }

  #scan(chunk: Buffer, stopAtBoundary: boolean): number {
    const end = chunk.length;
    let i = 0;
    while (i < end) {
      if (this.#headerRead === 0 && this.#payloadLeft > 0) {
        const skipped = Math.min(this.#payloadLeft, end - i);
        this.#payloadLeft -= skipped;
        i += skipped;
        if (stopAtBoundary && this.atMessageBoundary) return i;
        continue;
      }
      const byte = chunk[i++];
      const read = ++this.#headerRead;
      if (read === 1) {
        this.#firstByte = byte;
        continue;
      }
      if (read === 2) {
        const length7 = byte & 0x7f;
        this.#lengthEnd = length7 === 126 ? 4 : length7 === 127 ? 10 : 2;
        // The mask bit: a client frame carries a 4-byte masking key after the length.
        this.#headerLength = this.#lengthEnd + (byte & 0x80 ? 4 : 0);
        this.#payloadLeft = length7 < 126 ? length7 : 0;
      } else if (read <= this.#lengthEnd) {
        this.#payloadLeft = this.#payloadLeft * 256 + byte;
      }
      if (read === this.#headerLength) {
        this.#headerEnded();
        if (stopAtBoundary && this.atMessageBoundary) return i;
      }
    }
    return -1;
  }

  #headerEnded(): void {
    this.#headerRead = 0;
    // Past 2^53 the count would be inexact; such a frame is never treated as ending, so shutdown cuts it instead.
    if (this.#payloadLeft > Number.MAX_SAFE_INTEGER) this.#payloadLeft = Infinity;
    const opcode = this.#firstByte & 0x0f;
    if (opcode === OPCODE_CLOSE) this.closeSeen = true;
    else if (opcode < OPCODE_CLOSE) this.#fragmented = (this.#firstByte & 0x80) === 0;
  }
}
