import { headerField, quotedPrintable } from './encoding.ts';

export interface Mail {
  from: string;
  to: string[];
  subject: string;
  text: string;
  /** Extra headers, or replacements (any case) for From, To, Subject, Date, Message-ID; not for the MIME ones. */
  headers?: Record<string, string>;
}

/**
 * The message text (header, blank line, body) with CRLF line ends, all printable ASCII, no line over 78
 * characters but an address list's: header text through `headerField`, the body as quoted-printable
 * UTF-8. The MIME headers come last and win, so no caller can label the body as something it is not.
 */
export function formatMessage(mail: Mail, date: Date): string {
  const fields = new Map<string, [string, string]>();
  const set = (name: string, value: string) => fields.set(name.toLowerCase(), [fields.get(name.toLowerCase())?.[0] ?? name, value]);
  set('From', mail.from);
  set('To', mail.to.join(', '));
  set('Subject', mail.subject);
  // toUTCString ends in "GMT", an obsolete zone a sender must not write (RFC 5322 §4.3).
  set('Date', date.toUTCString().replace(/GMT$/, '+0000'));
  set('Message-ID', `<${crypto.randomUUID()}@keyhold>`);
  for (const [name, value] of Object.entries(mail.headers ?? {})) set(name, value);
  set('MIME-Version', '1.0');
  set('Content-Type', 'text/plain; charset=utf-8');
  set('Content-Transfer-Encoding', 'quoted-printable');
  const head = [...fields.values()].map(([name, value]) => headerField(name, value)).join('\r\n');
  return `${head}\r\n\r\n${quotedPrintable(mail.text)}`;
}
