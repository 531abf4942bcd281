// The admin plane's error bodies: `{message, code, type}` like the data plane's, with the HTTP status as `code`.
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';

/** Stable `type` strings, one per way an admin request can fail. */
export const ADMIN_ERRORS = Object.freeze({
  badRequest: 'meridian_admin_bad_request',
  unauthorized: 'meridian_admin_unauthorized',
  notFound: 'meridian_admin_not_found',
  methodNotAllowed: 'meridian_admin_method_not_allowed',
  misdirected: 'meridian_admin_misdirected',
  crossSite: 'meridian_admin_cross_site',
  internal: 'meridian_admin_internal',
});

export type AdminErrorType = (typeof ADMIN_ERRORS)[keyof typeof ADMIN_ERRORS];

export function adminError(c: Context, status: ContentfulStatusCode, type: AdminErrorType, message: string): Response {
  return c.json({ message, code: status, type }, status);
}
