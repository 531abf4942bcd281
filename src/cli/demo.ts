// `meridian demo`: placeholder until the demo backends land.
export async function runDemo(): Promise<number> {
  console.error('demo: not yet available');
  return 1;
}
