/**
 * The headers every answer carries. An API's answers are data, never a page: no sniffing,
 * framing, running or referring, whatever a browser is tricked into loading one.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'x-content-type-options': 'nosniff',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
});
