// The frame tracker finds message boundaries from headers alone, whatever the chunking: headers split anywhere,
// 7-, 16- and 64-bit lengths, masked frames, fragmented messages with control frames inside, and close frames.
import { describe, expect, test } from 'vitest';
import { FrameTracker, GOING_AWAY_FRAME } from './websocket-frames.ts';

interface FrameOptions {
  readonly fin?: boolean;
  readonly opcode?: number;
  readonly masked?: boolean;
}

/** One frame with a payload of `length` bytes of 0x61, its header in the shortest (or the forced) length form. */
function frame(length: number, { fin = true, opcode = 0x2, masked = false }: FrameOptions = {}, form?: 16 | 64): Buffer {
  const first = (fin ? 0x80 : 0) | opcode;
  const mask = masked ? 0x80 : 0;
  let header: Buffer;
  if (form === undefined && length < 126) header = Buffer.from([first, mask | length]);
  else if (form === 16 || (form === undefined && length < 65_536)) {
    header = Buffer.alloc(4);
    header.writeUInt16BE(length, 2);
    header[1] = mask | 126;
  } else {
    header = Buffer.alloc(10);
    header.writeBigUInt64BE(BigInt(length), 2);
    header[1] = mask | 127;
  }
  header[0] = first;
  const key = masked ? Buffer.from([1, 2, 3, 4]) : Buffer.alloc(0);
  return Buffer.concat([header, key, Buffer.alloc(length, 0x61)]);
}

/** Splits `bytes` into chunks of the given sizes, as the socket would deliver them. */
function chunked(bytes: Buffer, sizes: (i: number) => number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    chunks.push(bytes.subarray(at, Math.min(bytes.length, at + sizes(i))));
    at += chunks.at(-1)!.length;
  }
  return chunks;
}

describe('FrameTracker', () => {
  const stream = Buffer.concat([
    frame(5),
    frame(300, { masked: true }),
    frame(1_000),
    frame(10, {}, 64),
    frame(0, { opcode: 0x9 }),
    frame(126, { masked: true }, 16),
  ]);
  const ends = [7, 315, 1_319, 1_339, 1_341, stream.length];

  const chunkings: [string, (i: number) => number][] = [
    ['whole', () => stream.length],
    ['one byte at a time', () => 1],
    ['in 3-byte chunks, splitting every header', () => 3],
    ['in 7-byte chunks', () => 7],
    ['in uneven chunks', (i) => [1, 2, 9, 4096, 5][i % 5]],
  ];

  test.each(chunkings)('is between messages exactly at their ends when fed %s', (_name, sizes) => {
    const tracker = new FrameTracker();
    let at = 0;
    for (const chunk of chunked(stream, sizes)) {
      tracker.advance(chunk);
      at += chunk.length;
      expect(tracker.atMessageBoundary, `after ${at} bytes`).toBe(ends.includes(at));
    }
  });

  test.each(chunkings)('finds the first message end inside each chunk when fed %s', (_name, sizes) => {
    const tracker = new FrameTracker();
    let at = 0;
    for (const chunk of chunked(stream, sizes)) {
      const wasAtBoundary = tracker.atMessageBoundary;
      const offset = tracker.boundaryIn(chunk);
      const next = ends.find((end) => end > at && end <= at + chunk.length);
      if (wasAtBoundary) expect(offset).toBe(0);
      else expect(offset === -1 ? undefined : at + offset).toBe(next);
      // Shutdown stops at the boundary; here the rest of the chunk is followed as the tunnel would have.
      if (offset !== -1) tracker.advance(chunk.subarray(offset));
      at += chunk.length;
    }
  });

  test('a 16-bit length split between chunks, then its payload', () => {
    const tracker = new FrameTracker();
    const bytes = frame(1_000);
    tracker.advance(bytes.subarray(0, 3));
    expect(tracker.atMessageBoundary).toBe(false);
    tracker.advance(bytes.subarray(3, 500));
    expect(tracker.atMessageBoundary).toBe(false);
    tracker.advance(bytes.subarray(500));
    expect(tracker.atMessageBoundary).toBe(true);
  });

  test('a 64-bit length larger than 4 GiB is counted exactly across its split header', () => {
    const tracker = new FrameTracker();
    const header = Buffer.alloc(10);
    header[0] = 0x82;
    header[1] = 127;
    header.writeBigUInt64BE(5n * 2n ** 30n, 2);
    for (const byte of header) tracker.advance(Buffer.from([byte]));
    const mib = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < 5 * 1024 - 1; i++) tracker.advance(mib);
    expect(tracker.atMessageBoundary).toBe(false);
    expect(tracker.boundaryIn(Buffer.concat([mib, frame(1)]))).toBe(mib.length);
  });

  test('a masking key split from its header is skipped as header, not payload', () => {
    const tracker = new FrameTracker();
    const bytes = frame(4, { masked: true });
    tracker.advance(bytes.subarray(0, 4));
    expect(tracker.boundaryIn(bytes.subarray(4, 7))).toBe(-1);
    expect(tracker.boundaryIn(bytes.subarray(7))).toBe(3);
  });

  test('a fragmented message ends only with its final continuation frame, pings inside it or not', () => {
    const tracker = new FrameTracker();
    tracker.advance(frame(3, { fin: false, opcode: 0x1 }));
    expect(tracker.atMessageBoundary).toBe(false);
    tracker.advance(frame(0, { opcode: 0x9 }));
    expect(tracker.atMessageBoundary).toBe(false);
    tracker.advance(frame(3, { fin: false, opcode: 0x0 }));
    expect(tracker.atMessageBoundary).toBe(false);
    const last = frame(3, { opcode: 0x0 });
    expect(tracker.boundaryIn(Buffer.concat([last, frame(1)]))).toBe(last.length);
  });

  test('remembers a close frame from the upstream', () => {
    const tracker = new FrameTracker();
    tracker.advance(frame(5));
    expect(tracker.closeSeen).toBe(false);
    tracker.advance(GOING_AWAY_FRAME);
    expect(tracker.closeSeen).toBe(true);
    expect(tracker.atMessageBoundary).toBe(true);
  });

  test('never reports a boundary inside a frame whose length cannot be counted exactly', () => {
    const tracker = new FrameTracker();
    const header = Buffer.from([0x82, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    tracker.advance(header);
    expect(tracker.boundaryIn(Buffer.alloc(1024))).toBe(-1);
    expect(tracker.atMessageBoundary).toBe(false);
  });
});
