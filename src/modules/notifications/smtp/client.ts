import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export interface SmtpOptions {
  host: string;
  port: number;
  /** Implicit TLS (port 465). */
  secure?: boolean;
  username?: string | null;
  password?: string | null;
  /** The name given in EHLO. */
  clientName?: string;
  timeoutMs?: number;
  /** Trusted CA for a relay with a private CA. */
  ca?: string | Buffer;
}

export interface Mail {
  from: string;
  to: string[];
  subject: string;
  text: string;
  /** Extra headers (Message-ID, Date are added). */
  headers?: Record<string, string>;
}

const ADDRESS = /^[^\s@<>(),;:"]+@[^\s@<>(),;:"]+$/;
/** A header value on one line: CR and LF would let text inject headers or end the message. */
const oneLine = (s: string) => s.replace(/[\r\n]+/g, ' ');

/** Reads SMTP replies (multi-line `250-...` then `250 ...`) from a socket, one at a time. */
function replies(socket: Socket) {
  let buffer = '';
  let lines: string[] = [];
  const ready: Array<{ code: number; text: string }> = [];
  const waiting: Array<{ resolve: (r: { code: number; text: string }) => void; reject: (e: Error) => void }> = [];
  let failed: Error | null = null;
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
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
  });
  const fail = (err: Error) => {
    failed = err;
    for (const w of waiting.splice(0)) w.reject(err);
  };
  socket.on('error', fail);
  socket.on('close', () => fail(failed ?? new Error('SMTP connection closed')));
  return (): Promise<{ code: number; text: string }> => {
    const r = ready.shift();
    if (r) return Promise.resolve(r);
    if (failed) return Promise.reject(failed);
    return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
  };
}

/**
 * Sends one message: EHLO, AUTH PLAIN when credentials are given (only over TLS or to
 * loopback), MAIL FROM, RCPT TO per recipient, DATA (dot-stuffed), QUIT. No dependency beyond
 * node:net / node:tls. Throws with the failing command and reply code, never the credentials.
 */
export async function sendMail(opts: SmtpOptions, mail: Mail): Promise<void> {
  for (const a of [mail.from, ...mail.to]) if (!ADDRESS.test(a)) throw new Error('SMTP: an address is not a plain e-mail address');
  if (mail.to.length === 0) throw new Error('SMTP: no recipients');
  const loopback = opts.host === '127.0.0.1' || opts.host === '::1' || opts.host === 'localhost';
  if (opts.username && !opts.secure && !loopback) throw new Error('SMTP: refusing to send credentials without TLS to a non-loopback relay');
  const socket: Socket = opts.secure
    ? tlsConnect({ host: opts.host, port: opts.port, servername: opts.host, ...(opts.ca ? { ca: opts.ca } : {}) })
    : netConnect({ host: opts.host, port: opts.port });
  socket.setTimeout(opts.timeoutMs ?? 10_000, () => socket.destroy(new Error('SMTP timed out')));
  const next = replies(socket);
  const expect = async (what: string, ok: number[]) => {
    const r = await next();
    if (!ok.includes(r.code)) throw new Error(`SMTP ${what} refused (${r.code})`);
    return r;
  };
  const send = (line: string) => socket.write(`${line}\r\n`);
  try {
    await expect('greeting', [220]);
    send(`EHLO ${opts.clientName ?? 'keyhold'}`);
    await expect('EHLO', [250]);
    if (opts.username) {
      send(`AUTH PLAIN ${Buffer.from(`\u0000${opts.username}\u0000${opts.password ?? ''}`).toString('base64')}`);
      await expect('AUTH', [235]);
    }
    send(`MAIL FROM:<${mail.from}>`);
    await expect('MAIL FROM', [250]);
    for (const to of mail.to) {
      send(`RCPT TO:<${to}>`);
      await expect('RCPT TO', [250, 251]);
    }
    send('DATA');
    await expect('DATA', [354]);
    const headers = {
      From: mail.from, To: mail.to.join(', '), Subject: oneLine(mail.subject), Date: new Date().toUTCString(),
      'Message-ID': `<${crypto.randomUUID()}@keyhold>`, 'MIME-Version': '1.0', 'Content-Type': 'text/plain; charset=utf-8',
      'Content-Transfer-Encoding': '8bit', ...mail.headers,
    };
    const head = Object.entries(headers).map(([k, v]) => `${oneLine(k)}: ${oneLine(v)}`).join('\r\n');
    // Every line break becomes CRLF (a bare CR or LF is one too: relays that read "<CR>.<CR><LF>" or
    // "<LF>.<LF>" as the end of data would otherwise take the rest as a new message, SMTP smuggling),
    // then dot-stuffing: a line that starts with "." gets another, so the text can never end the message early.
    const body = mail.text.split(/\r\n|\r|\n/).map((l) => (l.startsWith('.') ? `.${l}` : l)).join('\r\n');
    socket.write(`${head}\r\n\r\n${body}\r\n.\r\n`);
    await expect('message', [250]);
    send('QUIT');
    await next().catch(() => null);
  } finally {
    socket.end();
    socket.destroy();
  }
}
