import { describe, expect, test } from 'vitest';
import { buildWorldMap, MAP_PROJECTION, PATH_GRID, project, ringPath } from './world-map.ts';

describe('project', () => {
  test.each([
    [-180, 84, 0, 0],
    [180, -60, 1000, 400],
    [0, 12, 500, 200],
  ])('(%d, %d) lands at (%d, %d)', (lon, lat, x, y) => {
    expect(project(lon, lat)).toEqual([x, y]);
  });
});

describe('ringPath', () => {
  test('moves once, then draws relative integer steps on the grid', () => {
    expect(ringPath([[-180, 84], [0, 84], [0, 12]], true)).toBe(`M0 0l${500 * PATH_GRID} 0l0 ${200 * PATH_GRID}z`);
  });

  test('drops points that round onto the one before, and rings that shrink below a triangle', () => {
    expect(ringPath([[0, 12], [0.01, 12.01], [10, 12]], false)).toBe(`M${500 * PATH_GRID} ${200 * PATH_GRID}l${Math.round((10 / 360) * 1000 * PATH_GRID)} 0`);
    expect(ringPath([[0, 12], [0.01, 12.01], [0.02, 12]], true)).toBe('');
  });

  test('a ring across the antimeridian is drawn whole off one edge and again off the other, never across the map', () => {
    const d = ringPath([[178, -16], [-178, -16], [-178, -18], [178, -18]], true);
    const [east, west] = d.split('z');
    expect(east).toBe(`M${Math.round((358 / 360) * 1000 * PATH_GRID)} ${Math.round(project(0, -16)[1] * PATH_GRID)}l${Math.round((4 / 360) * 1000 * PATH_GRID)} 0l0 ${Math.round((2 / 144) * 400 * PATH_GRID)}l${-Math.round((4 / 360) * 1000 * PATH_GRID)} 0`);
    expect(west).toMatch(new RegExp(`^M${-Math.round((2 / 360) * 1000 * PATH_GRID)} `));
    expect(d.split('z')).toHaveLength(3);
  });

  test('leaves out rings wholly south of the map', () => {
    expect(ringPath([[0, -70], [10, -70], [10, -80]], true)).toBe('');
  });
});

describe('buildWorldMap', () => {
  const map = buildWorldMap();
  const numbers = (d: string): number[] => d.match(/-?\d+/g)!.map(Number);

  test('land and borders are plain path data that start inside the box', () => {
    expect(map.land).toMatch(/^(M\d+ \d+(l-?\d+ -?\d+)+z)+$/);
    expect(map.borders).toMatch(/^(M\d+ \d+(l-?\d+ -?\d+)+)+$/);
    // No step spans half the map: such a line would be a polygon striped across the world.
    const steps = numbers(map.land.replace(/M-?\d+ -?\d+/g, ''));
    expect(Math.max(...steps.map(Math.abs))).toBeLessThan((MAP_PROJECTION.width * PATH_GRID) / 2);
  });

  test('the world at 1:110m: over a hundred land polygons, small enough to inline', () => {
    expect(map.land.split('M').length - 1).toBeGreaterThan(100);
    expect(map.land.length + map.borders.length).toBeLessThan(60_000);
    expect(numbers(map.land).every(Number.isInteger)).toBe(true);
  });

  test('places every country of geo-data at its centroid', () => {
    expect(map.places.SE).toEqual(['Sweden', ...project(15, 62).map((v) => Math.round(v * 10) / 10)]);
    expect(Object.keys(map.places).length).toBeGreaterThan(240);
  });
});
