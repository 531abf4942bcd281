// Resolves catalog region names such as `aws:eu-north-1` to coordinates from geo-data/regions.json.
import { readFileSync } from 'node:fs';

interface CatalogEntry {
  readonly lat: number;
  readonly lon: number;
}

let catalog: Record<string, CatalogEntry> | undefined;

/** Read once, on first use: config compiles at startup and on reload, never per request. */
export function catalogLocation(name: string): CatalogEntry | undefined {
  catalog ??= JSON.parse(readFileSync(new URL('../../geo-data/regions.json', import.meta.url), 'utf8')) as Record<string, CatalogEntry>;
  return Object.hasOwn(catalog, name) ? catalog[name] : undefined;
}
