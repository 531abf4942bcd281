// Health events for observers: every probe result, and every state change of an endpoint.
import diagnostics from 'node:diagnostics_channel';

/** Message: `CheckEvent` from checker.ts. */
export const healthCheck = diagnostics.channel('meridian:health:check');
/** Message: `{ change: HealthChange, endpoint: Endpoint }`. */
export const healthChange = diagnostics.channel('meridian:health:change');
