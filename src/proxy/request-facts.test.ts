import { describe, expect, test } from 'vitest';
import { nextRequestId } from './request-facts.ts';

describe('generated request ids', () => {
  test('are shaped like a version-4 UUID and never repeat within a thread', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const id = nextRequestId();
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      seen.add(id);
    }
    expect(seen.size).toBe(10_000);
  });
});
