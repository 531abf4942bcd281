// The contract between the data plane and whatever orders candidates for a request.
import type { Endpoint } from '../config/types.ts';

/** What the data plane knows about a request when it asks for candidates. */
export interface RouteFacts {
  readonly clientIp: string;
  readonly host: string | undefined;
}

export interface RouteDecision {
  /** Endpoints in the order they should be tried. */
  readonly candidates: readonly Endpoint[];
  readonly reason: string;
}

export interface Router {
  route(facts: RouteFacts): RouteDecision;
}
