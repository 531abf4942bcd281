// Compiles the listeners: names, PROXY protocol peers as CIDR sets, and the rules that tie listeners to each other
// and to the TLS section.
import { compileCidrs, parseCidr } from '../geo/cidr.ts';
import type { ConfigProblem } from './errors.ts';
import type { ParsedConfig } from './schema.ts';
import type { ListenerSettings } from './types.ts';

export function compileListeners(parsed: ParsedConfig, problems: ConfigProblem[]): ListenerSettings[] {
  const list = parsed.listen;
  const firstHttps = list.find((l) => l.protocol === 'https');
  const names = new Map<string, number>();
  const bound = new Map<number, { host: string; at: number }>();
  const out = list.map((entry, i): ListenerSettings => {
    const where = `listen[${i}]`;
    const name = entry.name ?? (list.filter((l) => l.protocol === entry.protocol).length > 1 ? `${entry.protocol}-${i}` : entry.protocol);
    const earlier = names.get(name);
    if (earlier !== undefined) problems.push({ path: `${where}.name`, message: `"${name}" is also the name of listen[${earlier}]` });
    names.set(name, i);
    // Every listener is bound with reusePort, so two on one port would split its connections between them silently.
    const other = entry.port === 0 ? undefined : bound.get(entry.port);
    if (other !== undefined && (other.host === entry.host || isWildcard(other.host) || isWildcard(entry.host))) {
      problems.push({ path: `${where}.port`, message: `${entry.port} is also the port of listen[${other.at}]` });
    }
    if (entry.port !== 0) bound.set(entry.port, { host: entry.host, at: i });
    if (entry.protocol === 'https' && parsed.tls.certificates.length === 0) {
      problems.push({ path: `${where}.protocol`, message: 'an https listener needs at least one pair in tls.certificates' });
    }
    if (entry.redirect !== undefined && entry.protocol !== 'redirect') {
      problems.push({ path: `${where}.redirect`, message: 'only a listener with protocol: redirect redirects' });
    }
    return {
      name,
      protocol: entry.protocol,
      host: entry.host,
      port: entry.port,
      maxHeaderBytes: entry.maxHeaderBytes,
      proxyProtocol: entry.proxyProtocol === undefined ? null : compileTrusted(entry.proxyProtocol.trusted, `${where}.proxyProtocol.trusted`, problems),
      http2: entry.http2,
      redirect: {
        httpsPort: entry.redirect?.httpsPort ?? (firstHttps === undefined || firstHttps.port === 0 ? null : firstHttps.port),
        acmeChallenge: entry.redirect?.acmeChallenge ?? 'proxy',
      },
    };
  });
  return out;
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

function compileTrusted(list: readonly string[], path: string, problems: ConfigProblem[]) {
  const valid = list.filter((entry, i) => {
    if (parseCidr(entry) !== null) return true;
    problems.push({ path: `${path}[${i}]`, message: `not an IP address or CIDR (${JSON.stringify(entry)})` });
    return false;
  });
  return compileCidrs(valid);
}
