// Meridian's own version, read once from package.json at startup for error bodies and /status.
import { readFileSync } from 'node:fs';

export const MERIDIAN_VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
