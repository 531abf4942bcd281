// Great-circle distance between two points, the measure behind "nearest region" and localPreferenceKm.

// The IUGG mean Earth radius; the spherical model errs by at most about 0.5 % against the ellipsoid, far below
// the error of locating a client by its IP.
const EARTH_RADIUS_KM = 6371.0088;
const RADIANS = Math.PI / 180;

/** Haversine distance in kilometres between two latitude/longitude points given in degrees. */
export function greatCircleKm(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const sinLat = Math.sin(((lat2 - lat1) * RADIANS) / 2);
  const sinLon = Math.sin(((lon2 - lon1) * RADIANS) / 2);
  const h = sinLat * sinLat + Math.cos(lat1 * RADIANS) * Math.cos(lat2 * RADIANS) * sinLon * sinLon;
  // min() guards asin against rounding just above 1 for antipodal points.
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(h)));
}
