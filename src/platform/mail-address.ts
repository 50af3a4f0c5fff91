/**
 * A bare e-mail address (`local@domain`), as SMTP's MAIL FROM and RCPT TO and a To header carry it:
 * no display name, brackets, comments, list separators, quotes, white space or control characters,
 * any of which could end the command or the header early or add a recipient.
 */
const MAIL_ADDRESS = /^[^\s\p{Cc}@<>(),;:"]+@[^\s\p{Cc}@<>(),;:"]+$/u;

/**
 * Whether `text` is a bare e-mail address the SMTP channel can send to. Configuration (the sender)
 * and rotation notify lists are held to it when set, so an address the relay would never be given
 * is refused then, not found when a notification fails.
 * @example
 * isMailAddress('ops@example.com');        // true
 * isMailAddress('Ops <ops@example.com>');  // false
 */
export function isMailAddress(text: string): boolean {
  return MAIL_ADDRESS.test(text);
}
