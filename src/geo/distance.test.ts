import { describe, expect, it } from 'vitest';
import { greatCircleKm } from './distance.ts';

describe('greatCircleKm', () => {
  // Published great-circle distances between city centres.
  it.each([
    ['London–New York', [51.5074, -0.1278], [40.7128, -74.006], 5570],
    ['Stockholm–Frankfurt', [59.3293, 18.0686], [50.1109, 8.6821], 1190],
    ['Sydney–Singapore', [-33.8688, 151.2093], [1.3521, 103.8198], 6300],
    ['Tokyo–San Francisco', [35.6762, 139.6503], [37.7749, -122.4194], 8270],
    ['São Paulo–Johannesburg', [-23.5505, -46.6333], [-26.2041, 28.0473], 7440],
  ] as const)('%s ≈ %i km within 1 %%', (_pair, [lat1, lon1], [lat2, lon2], km) => {
    expect(Math.abs(greatCircleKm(lat1, lon1, lat2, lon2) - km) / km).toBeLessThan(0.01);
  });

  it('is zero for one point, symmetric, and half the circumference between antipodes', () => {
    expect(greatCircleKm(59.3, 18.1, 59.3, 18.1)).toBe(0);
    expect(greatCircleKm(10, 20, -30, 140)).toBeCloseTo(greatCircleKm(-30, 140, 10, 20), 9);
    expect(greatCircleKm(0, 0, 0, 180)).toBeCloseTo(Math.PI * 6371.0088, 6);
    expect(greatCircleKm(90, 0, -90, 0)).toBeCloseTo(Math.PI * 6371.0088, 6);
  });

  it('crosses the antimeridian the short way', () => {
    expect(greatCircleKm(0, 179, 0, -179)).toBeCloseTo((2 * Math.PI * 6371.0088) / 180, 6);
  });
});
