// The text `meridian demo` greets a newcomer with: what runs where, and what to try.
import type { MeridianConfig } from '../config/types.ts';
import { SEED_REGIONS } from './topology.ts';

export function demoBanner(config: MeridianConfig): string {
  const proxy = `localhost:${config.listen[0].port}`;
  const https = config.listen.find((l) => l.protocol === 'https');
  const admin = `localhost:${config.admin.port}`;
  const probe = config.probe === null ? null : `localhost:${config.probe.port}`;
  const { self } = config.topology;
  const rows = config.topology.regions.map((region) => {
    const zones = region.zones.map((zone) => {
      const mark = region.name === self.region && zone.name === self.zone ? '*' : ' ';
      return `${mark}${zone.name} ${zone.endpoints.map((e) => `${e.hostname}:${e.port}`).join(',')}`;
    });
    const place = SEED_REGIONS[region.name]?.place ?? '';
    return `  ${region.name.padEnd(9)} ${place.padEnd(22)} ${zones.join('  ')}`;
  });
  const ws = `ws://${proxy}/v1/realtime?project=demo&channels[]=files`;
  return [
    '',
    'Meridian demo: four simulated Appwrite regions on loopback, two zones each.',
    `This instance plays ${self.region}/${self.zone} (*), so requests go there first and fail over`,
    'to its sibling zone, then to the other regions.',
    '',
    ...rows,
    '',
    `  proxy  http://${proxy}${https === undefined ? '' : `    https://localhost:${https.port} (self-signed, HTTP/2)`}`,
    `  admin  http://${admin}${probe === null ? '' : `    probe  http://${probe} (/readyz, /healthz only)`}`,
    '',
    'Try:',
    `  curl -i ${proxy}/v1/health/version          # x-meridian-region/-zone tell who answered`,
    `  curl ${proxy}/v1/databases                  # the backend echoes what Meridian forwarded`,
    `  curl -X POST --data-binary @somefile ${proxy}/v1/storage/buckets/demo/files`,
    `  node -e "const w=new WebSocket('${ws}');w.onmessage=(e)=>console.log(e.data);w.onopen=()=>w.send('hi')"`,
    ...(https === undefined ? [] : [`  curl -k --http2 -i https://localhost:${https.port}/v1/health/version   # TLS ends here; x-forwarded-proto: https upstream`]),
    ...(probe === null ? [] : [`  curl ${probe}/readyz                        # the probe listener: all a GeoDNS checker can see`]),
    `  curl ${admin}/status                        # the admin port: status, metrics, reload, dashboard at /`,
    '',
    'Ctrl-C stops everything.',
  ].join('\n');
}
