// MaxMind's reference databases, in a `shared/geo-test-data` folder beside the checkout (CI provides it).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

export const REFERENCE_GEO_DATA = new URL('../../../shared/geo-test-data/', import.meta.url);

/** The path of one reference file. */
export function referenceGeoFile(name: string): string {
  return fileURLToPath(new URL(name, REFERENCE_GEO_DATA));
}

/**
 * True when the folder is there. Otherwise registers one test that says so: it fails when `CI` is set, since CI
 * must run these, and only warns elsewhere.
 */
export function hasReferenceGeoData(): boolean {
  if (existsSync(REFERENCE_GEO_DATA)) return true;
  it('needs the reference geo data', () => {
    const message = `reference geo data not found at ${fileURLToPath(REFERENCE_GEO_DATA)}; CI provides it`;
    expect(process.env.CI, message).toBeFalsy();
    console.warn(message);
  });
  return false;
}
