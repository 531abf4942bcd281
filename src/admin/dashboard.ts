// `GET /`: the dashboard, one self-contained page (dashboard.html) with the map's land dots embedded, built once at
// startup, and a content security policy that admits exactly its own inline script and style.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

export interface DashboardPage {
  readonly html: string;
  readonly contentSecurityPolicy: string;
}

interface Country {
  readonly lat: number;
  readonly lon: number;
}

/** The land drawn as one dot per country centroid: a few kilobytes, and no map data to license or fetch. */
function landDots(): string {
  const countries = JSON.parse(readFileSync(new URL('../../geo-data/countries.json', import.meta.url), 'utf8')) as Record<string, Country>;
  return JSON.stringify(Object.values(countries).map(({ lon, lat }) => [Math.round(lon * 10) / 10, Math.round(lat * 10) / 10]));
}

function inlineHash(html: string, tag: 'script' | 'style'): string {
  const match = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(html);
  if (match === null) throw new Error(`dashboard.html has no inline <${tag}>`);
  return `'sha256-${createHash('sha256').update(match[1]).digest('base64')}'`;
}

function build(): DashboardPage {
  const html = readFileSync(new URL('./dashboard.html', import.meta.url), 'utf8').replace('__LAND__', landDots());
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
