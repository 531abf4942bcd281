import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

interface Region { name: string; city: string; country: string; lat: number; lon: number }
interface Country { name: string; continent: string; lat: number; lon: number }

const load = <T>(file: string): Record<string, T> => JSON.parse(readFileSync(new URL(`../../geo-data/${file}`, import.meta.url), 'utf8'));
const regions = load<Region>('regions.json');
const countries = load<Country>('countries.json');
const PROVIDERS = ['aws', 'gcp', 'azure', 'do', 'hetzner', 'linode'];
const CONTINENTS = ['AF', 'AN', 'AS', 'EU', 'NA', 'OC', 'SA'];

function expectCoordinates({ lat, lon }: { lat: number; lon: number }): void {
  expect(lat).toBeTypeOf('number');
  expect(lon).toBeTypeOf('number');
  expect(Math.abs(lat)).toBeLessThanOrEqual(90);
  expect(Math.abs(lon)).toBeLessThanOrEqual(180);
}

describe('geo-data/regions.json', () => {
  it('has well-formed entries, each in a known country', () => {
    for (const [key, region] of Object.entries(regions)) {
      expect(key).toMatch(new RegExp(`^(${PROVIDERS.join('|')}):[a-z0-9]+(-[a-z0-9]+)*$`));
      expect(Object.keys(region).sort()).toEqual(['city', 'country', 'lat', 'lon', 'name']);
      expect(region.name.length).toBeGreaterThan(0);
      expect(region.city.length).toBeGreaterThan(0);
      expect(countries).toHaveProperty(region.country);
      expectCoordinates(region);
    }
  });

  it('covers every provider', () => {
    for (const provider of PROVIDERS) {
      expect(Object.keys(regions).filter((key) => key.startsWith(`${provider}:`)).length, provider).toBeGreaterThanOrEqual(5);
    }
  });

  it('places well-known regions where they are', () => {
    expect(regions['aws:eu-north-1']).toMatchObject({ city: 'Stockholm', country: 'SE' });
    expect(regions['aws:eu-north-1'].lat).toBeCloseTo(59.3, 0);
    expect(regions['aws:eu-north-1'].lon).toBeCloseTo(18.1, 0);
    expect(regions['gcp:europe-west1']).toMatchObject({ country: 'BE' });
    expect(regions['azure:westeurope']).toMatchObject({ country: 'NL' });
    expect(regions['do:fra1']).toMatchObject({ city: 'Frankfurt', country: 'DE' });
    expect(regions['hetzner:fsn1']).toMatchObject({ city: 'Falkenstein', country: 'DE' });
    expect(regions['linode:us-east']).toMatchObject({ country: 'US' });
    expect(regions['aws:ap-southeast-2'].lat).toBeLessThan(0);
    expect(regions['gcp:us-west2'].lon).toBeLessThan(0);
  });
});

describe('geo-data/countries.json', () => {
  it('has every ISO 3166-1 alpha-2 code, each well-formed', () => {
    expect(Object.keys(countries).length).toBeGreaterThanOrEqual(240);
    for (const [code, country] of Object.entries(countries)) {
      expect(code).toMatch(/^[A-Z]{2}$/);
      expect(Object.keys(country).sort()).toEqual(['continent', 'lat', 'lon', 'name']);
      expect(country.name.length).toBeGreaterThan(0);
      expect(CONTINENTS).toContain(country.continent);
      expectCoordinates(country);
    }
  });

  it('assigns continents as MaxMind does', () => {
    const continentOf = (code: string) => countries[code]?.continent;
    expect(['DE', 'SE', 'RU', 'CY', 'GB'].map(continentOf)).toEqual(['EU', 'EU', 'EU', 'EU', 'EU']);
    expect(['TR', 'JP', 'IL', 'GE'].map(continentOf)).toEqual(['AS', 'AS', 'AS', 'AS']);
    expect(['US', 'MX', 'PA', 'GL'].map(continentOf)).toEqual(['NA', 'NA', 'NA', 'NA']);
    expect(['BR', 'AR', 'FK'].map(continentOf)).toEqual(['SA', 'SA', 'SA']);
    expect(['EG', 'ZA', 'NG'].map(continentOf)).toEqual(['AF', 'AF', 'AF']);
    expect(['AU', 'NZ', 'FJ'].map(continentOf)).toEqual(['OC', 'OC', 'OC']);
    expect(['AQ', 'TF'].map(continentOf)).toEqual(['AN', 'AN']);
  });

  it('puts centroids inside the right part of the world', () => {
    expect(countries['SE']).toMatchObject({ name: 'Sweden' });
    expect(countries['SE'].lat).toBeGreaterThan(55);
    expect(countries['AU'].lat).toBeLessThan(-20);
    expect(countries['US'].lon).toBeLessThan(-60);
  });
});
