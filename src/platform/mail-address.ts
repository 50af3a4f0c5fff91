/**
 * A bare e-mail address (`local@domain`), as SMTP's MAIL FROM and RCPT TO and a To header carry it:
 * no display name, brackets, comments, list separators, quotes, white space or control characters,
 * any of which could end the command or the header early or add a recipient. Printable ASCII only
 * (raw UTF-8 needs SMTPUTF8, which a relay may not offer: write an international domain in its
 * xn-- form), within SMTP's lengths: 64 octets before the @, 254 in all.
 */
const MAIL_ADDRESS = /^[!-~]{1,64}@[!-~]+$/;
const SPECIALS = /[@<>(),;:"\\[\]]/;
/** RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its brackets. */
const MAX_LENGTH = 254;

/**
 * Whether `text` is a bare e-mail address the SMTP channel can send to. Configuration (the sender)
 * and rotation notify lists are held to it when set, so an address the relay would never be given
 * is refused then, not found when a notification fails.
 * @example
 * isMailAddress('ops@example.com');        // true
 * isMailAddress('Ops <ops@example.com>');  // false
 */
export function isMailAddress(text: string): boolean {
  if (text.length > MAX_LENGTH || !MAIL_ADDRESS.test(text)) return false;
  const at = text.indexOf('@');
  return !SPECIALS.test(text.slice(0, at)) && !SPECIALS.test(text.slice(at + 1));
}
