// Data-plane events for observers (metrics, access log); publishing is free when nobody subscribes.
import diagnostics from 'node:diagnostics_channel';

/** Published once per finished exchange, with the Exchange itself as the message (no allocation). */
export const exchangeEnd = diagnostics.channel('meridian:exchange:end');
/** Published when a request moves to another candidate, with the Exchange as the message. */
export const exchangeFailover = diagnostics.channel('meridian:exchange:failover');
/** Published when a WebSocket tunnel opens and closes, with the Tunnel as the message. */
export const tunnelOpen = diagnostics.channel('meridian:tunnel:open');
export const tunnelClose = diagnostics.channel('meridian:tunnel:close');
