import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { isLoopbackHost } from '../../../platform/addresses.ts';
import { isMailAddress } from '../../../platform/mail-address.ts';
import { formatMessage, type Mail } from './message.ts';

export type { Mail } from './message.ts';

export interface SmtpOptions {
  host: string;
  port: number;
  /** Implicit TLS (smtps, port 465). */
  secure?: boolean;
  /**
   * STARTTLS on a plain connection: `required` (a relay that does not offer it, or whose certificate does
   * not verify, gets nothing), `if-offered`, or `off`. Default: required, except to a loopback relay.
   */
  starttls?: 'required' | 'if-offered' | 'off';
  username?: string | null;
  password?: string | null;
  /** The name given in EHLO. */
  clientName?: string;
  /** Longest silence from the relay (default 10 s). */
  timeoutMs?: number;
  /** Longest a whole send may take (default 60 s): a relay trickling bytes never goes silent for long. */
  deadlineMs?: number;
  /** Trusted CA for a relay with a private CA. */
  ca?: string | Buffer;
}

/** Reads SMTP replies (multi-line `250-...` then `250 ...`) from a socket, one at a time; `detach` stops it (before STARTTLS). */
function replies(socket: Socket) {
  let buffer = '';
  let lines: string[] = [];
  const ready: Array<{ code: number; text: string }> = [];
  const waiting: Array<{ resolve: (r: { code: number; text: string }) => void; reject: (e: Error) => void }> = [];
  let failed: Error | null = null;
  socket.setEncoding('utf8');
  const onData = (chunk: string) => {
    buffer += chunk;
    for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
      const line = buffer.slice(0, nl).replace(/\r$/, '');
      buffer = buffer.slice(nl + 1);
      lines.push(line);
      if (/^\d{3} /.test(line) || /^\d{3}$/.test(line)) {
        const reply = { code: Number(line.slice(0, 3)), text: lines.map((l) => l.slice(4)).join('\n') };
        lines = [];
        const w = waiting.shift();
        if (w) w.resolve(reply);
        else ready.push(reply);
      }
    }
    if (buffer.length > 65_536) socket.destroy(new Error('SMTP reply line too long'));
  };
  const fail = (err: Error) => {
    failed = err;
    for (const w of waiting.splice(0)) w.reject(err);
  };
  const onClose = () => fail(failed ?? new Error('SMTP connection closed'));
  socket.on('data', onData);
  socket.on('error', fail);
  socket.on('close', onClose);
  return {
    next(): Promise<{ code: number; text: string }> {
      const r = ready.shift();
      if (r) return Promise.resolve(r);
      if (failed) return Promise.reject(failed);
      return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
    },
    /** Stops reading; true if the relay sent anything not yet read (text pipelined before a TLS upgrade is not trusted). */
    detach(): boolean {
      socket.off('data', onData);
      socket.off('error', fail);
      socket.off('close', onClose);
      return buffer.length > 0 || ready.length > 0;
    },
  };
}

/**
 * Sends one message: EHLO, STARTTLS (see `starttls`) and EHLO again, AUTH PLAIN when credentials are
 * given (only over TLS or to loopback), MAIL FROM, RCPT TO per recipient, DATA (the message of
 * `formatMessage`, 7-bit in short lines, dot-stuffed), QUIT.
 * No dependency beyond node:net / node:tls. Recipients the relay refuses are left out and counted
 * (`refused`); it throws when it refuses all of them or anything else fails, with the failing command
 * and reply code, never the credentials or an address.
 */
export async function sendMail(opts: SmtpOptions, mail: Mail): Promise<{ refused: number }> {
  for (const a of [mail.from, ...mail.to]) if (!isMailAddress(a)) throw new Error('SMTP: an address is not a plain e-mail address');
  if (mail.to.length === 0) throw new Error('SMTP: no recipients');
  const message = formatMessage(mail, new Date());
  const loopback = isLoopbackHost(opts.host);
  const starttls = opts.secure ? 'off' : (opts.starttls ?? (loopback ? 'if-offered' : 'required'));
  if (opts.username && !opts.secure && starttls === 'off' && !loopback) throw new Error('SMTP: refusing to send credentials without TLS to a non-loopback relay');
  const tlsOptions = { host: opts.host, ...(isIP(opts.host) ? {} : { servername: opts.host }), ...(opts.ca ? { ca: opts.ca } : {}) };
  let socket: Socket = opts.secure ? tlsConnect({ ...tlsOptions, port: opts.port }) : netConnect({ host: opts.host, port: opts.port });
  const arm = (s: Socket) => s.setTimeout(opts.timeoutMs ?? 10_000, () => s.destroy(new Error('SMTP timed out')));
  arm(socket);
  const deadlineMs = opts.deadlineMs ?? 60_000;
  // Ends whichever socket is current (plain, or TLS after STARTTLS).
  const deadline = setTimeout(() => socket.destroy(new Error(`SMTP took longer than ${deadlineMs} ms`)), deadlineMs);
  let reader = replies(socket);
  const expect = async (what: string, ok: number[]) => {
    const r = await reader.next();
    if (!ok.includes(r.code)) throw new Error(`SMTP ${what} refused (${r.code})`);
    return r;
  };
  const send = (line: string) => socket.write(`${line}\r\n`);
  let refused = 0;
  try {
    await expect('greeting', [220]);
    send(`EHLO ${opts.clientName ?? 'keyhold'}`);
    const ehlo = await expect('EHLO', [250]);
    let encrypted = opts.secure === true;
    const offered = /^STARTTLS$/im.test(ehlo.text);
    if (!encrypted && (starttls === 'required' || (starttls === 'if-offered' && offered))) {
      if (!offered) throw new Error('SMTP: the relay does not offer STARTTLS (set tls=none to send in plain text)');
      send('STARTTLS');
      await expect('STARTTLS', [220]);
      if (reader.detach()) throw new Error('SMTP: the relay sent data before the TLS handshake');
      const plain = socket;
      socket = await new Promise<Socket>((resolve, reject) => {
        const secured = tlsConnect({ ...tlsOptions, socket: plain }, () => resolve(secured));
        secured.once('error', reject);
      });
      plain.setTimeout(0);
      arm(socket);
      reader = replies(socket);
      encrypted = true;
      // What the relay said before the handshake is forgotten (RFC 3207 §4.2): greet it again.
      send(`EHLO ${opts.clientName ?? 'keyhold'}`);
      await expect('EHLO', [250]);
    }
    if (opts.username) {
      if (!encrypted && !loopback) throw new Error('SMTP: refusing to send credentials without TLS to a non-loopback relay');
      send(`AUTH PLAIN ${Buffer.from(`\u0000${opts.username}\u0000${opts.password ?? ''}`).toString('base64')}`);
      await expect('AUTH', [235]);
    }
    send(`MAIL FROM:<${mail.from}>`);
    await expect('MAIL FROM', [250]);
    // A recipient the relay refuses (a mailbox gone, a 4xx it will not take now) is left out, and the
    // others still get the message: one stale address must not silence an alert to everyone else.
    let lastRefusal = 0;
    for (const to of mail.to) {
      send(`RCPT TO:<${to}>`);
      const r = await reader.next();
      if (r.code === 250 || r.code === 251) continue;
      refused++;
      lastRefusal = r.code;
    }
    if (refused === mail.to.length) throw new Error(`SMTP RCPT TO refused every recipient (${lastRefusal})`);
    send('DATA');
    await expect('DATA', [354]);
    // Every line break goes out as CRLF (the message has no other, but this is where SMTP needs it: a bare
    // CR or LF could let a relay that reads "<CR>.<CR><LF>" or "<LF>.<LF>" as the end of data take the rest
    // as a new message, SMTP smuggling), then dot-stuffing: a line that starts with "." gets another, so
    // the text can never end the message early.
    const data = message.split(/\r\n|\r|\n/).map((l) => (l.startsWith('.') ? `.${l}` : l)).join('\r\n');
    socket.write(`${data}\r\n.\r\n`);
    await expect('message', [250]);
    send('QUIT');
    await reader.next().catch(() => null);
    return { refused };
  } finally {
    clearTimeout(deadline);
    socket.end();
    socket.destroy();
  }
}
