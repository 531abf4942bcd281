// The dashboard's base map: Natural Earth land and country borders (world-atlas, 1:110m) projected once at startup
// into SVG path data, and the country centroids the page places clients at. The page carries its map; nothing is fetched.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { feature, mesh } from 'topojson-client';
import type { GeometryCollection, Topology } from 'topojson-specification';

/**
 * Equirectangular, cropped to the latitudes people live at: 84° N to 60° S fills a 1000 × 400 box, and Antarctica,
 * which no region or client sits on, takes no room. The page's script projects markers with the same numbers.
 */
export const MAP_PROJECTION = Object.freeze({ width: 1000, height: 400, north: 84, south: -60 });
/**
 * Path data is written on a grid this many times finer than the box and drawn scaled down: half-unit precision
 * (about 0.7 px on a wide screen) with integers only, which keeps the coastline smooth and the page small.
 */
export const PATH_GRID = 2;

export interface WorldMap {
  /** One path of every land polygon, in grid units. */
  readonly land: string;
  /** Borders between countries (not coastlines), as open lines in grid units. */
  readonly borders: string;
  /** By ISO code: the country's name and its centroid in map units, for client hotspots. */
  readonly places: Readonly<Record<string, readonly [name: string, x: number, y: number]>>;
}

type Ring = readonly (readonly number[])[];

export function project(lon: number, lat: number): [x: number, y: number] {
  const { width, height, north, south } = MAP_PROJECTION;
  return [((lon + 180) / 360) * width, ((north - lat) / (north - south)) * height];
}

/**
 * A ring as a move and relative lines on the grid, points that round onto the one before dropped. Rings that
 * shrink below a triangle (islands smaller than the grid) and rings entirely south of the map are left out.
 * A ring crossing the antimeridian (Fiji, Chukotka) is unwrapped into one continuous shape running off an edge of
 * the map, and drawn again a world away for the part off the other edge, rather than striped across the whole map.
 */
export function ringPath(ring: Ring, closed: boolean): string {
  if (ring.every(([, lat]) => lat < MAP_PROJECTION.south)) return '';
  const unwrapped: [number, number][] = [];
  let shift = 0;
  for (const [lon, lat] of ring) {
    const previous = unwrapped.at(-1);
    if (previous !== undefined) shift += Math.round((previous[0] - (lon + shift)) / 360) * 360;
    unwrapped.push([lon + shift, lat]);
  }
  const lons = unwrapped.map(([lon]) => lon);
  let d = draw(unwrapped, 0, closed);
  if (Math.max(...lons) > 180) d += draw(unwrapped, -360, closed);
  if (Math.min(...lons) < -180) d += draw(unwrapped, 360, closed);
  return d;
}

function draw(points: readonly [number, number][], offset: number, closed: boolean): string {
  let d = '';
  let drawn = 0;
  let px = 0;
  let py = 0;
  for (const [lon, lat] of points) {
    const [mx, my] = project(lon + offset, lat);
    const x = Math.round(mx * PATH_GRID);
    const y = Math.round(my * PATH_GRID);
    if (drawn > 0 && x === px && y === py) continue;
    d += drawn === 0 ? `M${x} ${y}` : `l${x - px} ${y - py}`;
    px = x;
    py = y;
    drawn++;
  }
  if (drawn < (closed ? 3 : 2)) return '';
  return closed ? `${d}z` : d;
}

function atlas(file: string): Topology {
  const path = createRequire(import.meta.url).resolve(`world-atlas/${file}`);
  return JSON.parse(readFileSync(path, 'utf8')) as Topology;
}

function landPath(topology: Topology): string {
  const land = feature(topology, topology.objects.land as GeometryCollection);
  let d = '';
  for (const { geometry } of land.features) {
    const polygons = geometry.type === 'Polygon' ? [geometry.coordinates] : geometry.type === 'MultiPolygon' ? geometry.coordinates : [];
    for (const rings of polygons) for (const ring of rings) d += ringPath(ring, true);
  }
  return d;
}

function bordersPath(topology: Topology): string {
  // Arcs shared by two different countries: the borders, without tracing every coastline a second time.
  const lines = mesh(topology, topology.objects.countries as GeometryCollection, (a, b) => a !== b);
  return lines.coordinates.map((line) => ringPath(line, false)).join('');
}

interface Country {
  readonly name: string;
  readonly lat: number;
  readonly lon: number;
}

function placesOf(countries: Readonly<Record<string, Country>>): WorldMap['places'] {
  const places: Record<string, readonly [string, number, number]> = {};
  for (const [code, { name, lat, lon }] of Object.entries(countries)) {
    const [x, y] = project(lon, lat);
    places[code] = [name, Math.round(x * 10) / 10, Math.round(y * 10) / 10];
  }
  return places;
}

export function buildWorldMap(): WorldMap {
  const countries = JSON.parse(readFileSync(new URL('../../geo-data/countries.json', import.meta.url), 'utf8')) as Record<string, Country>;
  return Object.freeze({
    land: landPath(atlas('land-110m.json')),
    borders: bordersPath(atlas('countries-110m.json')),
    places: Object.freeze(placesOf(countries)),
  });
}
