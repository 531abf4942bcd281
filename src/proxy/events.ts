// Data-plane events for observers (metrics, access log, traffic summary). Each message is the thread's one reused
// record (record.ts): read it during the publish and copy what you keep. Nothing is filled when nobody subscribes.
import diagnostics from 'node:diagnostics_channel';

/** Published once per finished exchange, when its downstream response closes, with an ExchangeRecord. */
export const exchangeEnd = diagnostics.channel('meridian:exchange:end');
/** Published when a request has moved to another candidate, with a FailoverRecord. */
export const exchangeFailover = diagnostics.channel('meridian:exchange:failover');
/** Published when a WebSocket upgrade request arrives and when its client connection closes, with a TunnelRecord. */
export const tunnelOpen = diagnostics.channel('meridian:tunnel:open');
export const tunnelClose = diagnostics.channel('meridian:tunnel:close');
