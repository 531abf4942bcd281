// `GET /`: the dashboard, one self-contained page (dashboard.html) with its world map embedded, built once at
// startup, and a content security policy that admits exactly its own inline script and style.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { buildWorldMap, MAP_PROJECTION, PATH_GRID } from './world-map.ts';

export interface DashboardPage {
  readonly html: string;
  readonly contentSecurityPolicy: string;
}

/** The page with its placeholders filled; a function replacer, so no `$` in the data is read as a pattern. */
function fill(template: string): string {
  const map = buildWorldMap();
  const values: Record<string, string> = {
    __MAP_SIZE__: `${MAP_PROJECTION.width} ${MAP_PROJECTION.height}`,
    __GRID_SCALE__: String(1 / PATH_GRID),
    __LAND__: map.land,
    __BORDERS__: map.borders,
    __MAP__: JSON.stringify({ ...MAP_PROJECTION, places: map.places }),
  };
  return template.replace(/__[A-Z_]+__/g, (name) => {
    const value = values[name];
    if (value === undefined) throw new Error(`dashboard.html has an unknown placeholder ${name}`);
    return value;
  });
}

function inlineHash(html: string, tag: 'script' | 'style'): string {
  const match = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(html);
  if (match === null) throw new Error(`dashboard.html has no inline <${tag}>`);
  return `'sha256-${createHash('sha256').update(match[1]).digest('base64')}'`;
}

function build(): DashboardPage {
  const html = fill(readFileSync(new URL('./dashboard.html', import.meta.url), 'utf8'));
  const contentSecurityPolicy = [
    "default-src 'none'",
    `script-src ${inlineHash(html, 'script')}`,
    `style-src ${inlineHash(html, 'style')}`,
    "connect-src 'self'",
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return Object.freeze({ html, contentSecurityPolicy });
}

let page: DashboardPage | undefined;

/** Read and built on first use, then kept: the page is the same for every request. */
export function dashboardPage(): DashboardPage {
  return (page ??= build());
}
