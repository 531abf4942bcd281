// `meridian check`: validate a config file, and read and check its TLS certificate pairs; exit 0 when valid, 1 with
// every problem listed.
import { loadConfigFile } from '../config/load.ts';
import { ConfigError } from '../config/errors.ts';
import { CertificateError } from '../listen/certificates.ts';
import { readPair } from '../control/certificate-store.ts';

export async function runCheck(path: string): Promise<number> {
  let config;
  try {
    config = await loadConfigFile(path);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(err.message);
    return 1;
  }
  // The same checks a start or a reload makes, so a broken pair is found before it is deployed.
  const outcomes = await Promise.allSettled(config.tls.certificates.map(readPair));
  const problems = outcomes.flatMap((outcome, i) => (outcome.status === 'rejected' ? [`  tls.certificates[${i}]: ${describe(outcome.reason)}`] : []));
  if (problems.length > 0) {
    console.error(`${path}: certificate problems:\n${problems.join('\n')}`);
    return 1;
  }
  const { regions, endpoints } = config.topology;
  const certificates = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [`${o.value.label} until ${new Date(o.value.notAfter).toISOString().slice(0, 10)}`] : []));
  console.log(`${path}: ok (${regions.length} regions, ${endpoints.length} endpoints${certificates.length === 0 ? '' : `, certificates: ${certificates.join(', ')}`})`);
  return 0;
}

function describe(err: unknown): string {
  if (err instanceof CertificateError) return err.message;
  throw err;
}
