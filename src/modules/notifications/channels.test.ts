import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { decodeMail } from '../../../test/fixtures/mime-decode.ts';
import { startSmtpServer } from '../../../test/fixtures/smtp-server.ts';
import { guardedFetch } from '../connectors/address-guard.ts';
import { pinnedFetch } from '../connectors/pinned-fetch.ts';
import { notifierFromSettings } from './channels.ts';
import { createFanoutNotifier } from './fanout.ts';
import type { Notification, Notifier } from './notifier.ts';
import { createSmtpNotifier, sendMail } from './smtp/index.ts';
import { createWebhookNotifier, DELIVERY_HEADER, signNotification, SIGNATURE_HEADER, TIMESTAMP_HEADER } from './webhook/index.ts';

const note: Notification = {
  type: 'rotation.rolled-back', tenantId: 't1', severity: 'alert', recipients: [{ kind: 'email', id: 'ops@example.com' }, { kind: 'user', id: 'u1' }],
  subject: 'Rotation of DB in production failed\r\nBcc: attacker@example.com', body: 'Failed step: verify\n.\nConnector b: HTTP 401', resource: { type: 'rotation', id: 'r1' },
};

let smtp: Awaited<ReturnType<typeof startSmtpServer>>;
/** A relay that offers STARTTLS with a certificate for 127.0.0.1 made for this run. */
let tlsSmtp: Awaited<ReturnType<typeof startSmtpServer>>;
let ca: Buffer;
let certDir: string;
let hook: { url: string; received: Array<{ headers: IncomingHttpHeaders; body: string }>; status: number[]; close(): Promise<void> };
describe('notification channels', () => {
  before(async () => {
    smtp = await startSmtpServer({ user: 'keyhold', pass: 'relay-pass' });
    certDir = await mkdtemp(join(tmpdir(), 'keyhold-smtp-'));
    const [cert, key] = [join(certDir, 'cert.pem'), join(certDir, 'key.pem')];
    await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
      '-subj', '/CN=keyhold-smtp-test', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert]);
    ca = await readFile(cert);
    tlsSmtp = await startSmtpServer({ user: 'keyhold', pass: 'relay-pass', tls: { cert: ca, key: await readFile(key) } });
    const received: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
    const status: number[] = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        res.writeHead(status.shift() ?? 204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    hook = { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received, status, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
  });
  after(async () => {
    await smtp.close();
    await tlsSmtp.close();
    await rm(certDir, { recursive: true, force: true });
    await hook.close();
  });

  test('SMTP: a notification is mailed to its e-mail recipients with AUTH PLAIN, and header injection and dot lines cannot escape', async () => {
    const n = createSmtpNotifier({ host: '127.0.0.1', port: smtp.port, username: 'keyhold', password: 'relay-pass', from: 'keyhold@example.com' });
    await n.notify(note);
    const mail = smtp.received.at(-1)!;
    assert.equal(mail.auth, 'keyhold');
    assert.deepEqual(mail.to, ['ops@example.com'], 'only e-mail recipients; the smuggled Bcc is not a recipient');
    const read = decodeMail(mail.data);
    assert.equal(read.header('Subject'), '[Keyhold] Rotation of DB in production failed Bcc: attacker@example.com');
    assert.equal(read.header('Bcc'), undefined);
    assert.equal(read.body, 'Failed step: verify\n.\nConnector b: HTTP 401', 'the body after a lone "." line arrived whole');
  });

  test('SMTP: a bare CR or LF in the body or a header never reaches the relay, so no "<CR>.<CR><LF>" can end the message early', async () => {
    const n = createSmtpNotifier({ host: '127.0.0.1', port: smtp.port, from: 'keyhold@example.com' });
    await n.notify({ ...note, subject: 'cr\ronly', body: 'Justification: x\r.\r\nMAIL FROM:<evil@example.com>\rsecond\nthird' });
    const mail = smtp.received.at(-1)!;
    assert.ok(!mail.data.includes('\r'), 'every line break went out as CRLF');
    assert.match(mail.data, /^\.\nMAIL FROM:<evil@example\.com>\nsecond\nthird$/m, 'the lone dot was dot-stuffed (the relay un-stuffs it) and the rest is body');
    assert.equal(decodeMail(mail.data).header('Subject'), '[Keyhold] cr only');
  });

  test('SMTP: wrong credentials and non-addresses fail with a message that names no credential', async () => {
    await assert.rejects(sendMail({ host: '127.0.0.1', port: smtp.port, username: 'keyhold', password: 'wrong-pass' }, { from: 'a@example.com', to: ['b@example.com'], subject: 's', text: 't' }),
      (err: Error) => /AUTH refused \(535\)/.test(err.message) && !err.message.includes('wrong-pass'));
    await assert.rejects(sendMail({ host: '127.0.0.1', port: smtp.port }, { from: 'a@example.com', to: ['b@example.com>\r\nRCPT TO:<c@example.com'], subject: 's', text: 't' }), /not a plain e-mail address/);
    await assert.rejects(sendMail({ host: 'smtp.example.com', port: 25, starttls: 'off', username: 'u', password: 'p' }, { from: 'a@example.com', to: ['b@example.com'], subject: 's', text: 't' }), /without TLS/);
  });

  test('SMTP: a relay that offers STARTTLS gets the credentials and the message only over TLS', async () => {
    const n = createSmtpNotifier({ host: '127.0.0.1', port: tlsSmtp.port, ca, username: 'keyhold', password: 'relay-pass', from: 'keyhold@example.com', starttls: 'required' });
    await n.notify(note);
    assert.deepEqual(tlsSmtp.auths, [{ user: 'keyhold', tls: true }]);
    assert.deepEqual([tlsSmtp.received.at(-1)?.tls, tlsSmtp.received.at(-1)?.auth], [true, 'keyhold']);
  });

  test('SMTP: with STARTTLS required, a relay that does not offer it or whose certificate does not verify never sees the credentials', async () => {
    const opts = { host: '127.0.0.1', username: 'keyhold', password: 'relay-pass', starttls: 'required' } as const;
    const mail = { from: 'a@example.com', to: ['b@example.com'], subject: 's', text: 't' };
    await assert.rejects(sendMail({ ...opts, port: smtp.port }, mail), /does not offer STARTTLS/);
    const before = tlsSmtp.auths.length;
    await assert.rejects(sendMail({ ...opts, port: tlsSmtp.port }, mail), /self-signed|certificate/i, 'no CA given: the relay is not trusted');
    assert.equal(tlsSmtp.auths.length, before);
  });

  test('SMTP: a relay that answers a byte at a time cannot hold a send past its deadline', async () => {
    // Greets one character every 200 ms: each well within the idle timeout, the greeting never complete.
    const trickle = createTcpServer((socket) => {
      const timer = setInterval(() => socket.write('2'), 200);
      socket.on('close', () => clearInterval(timer));
      socket.on('error', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => trickle.listen(0, '127.0.0.1', resolve));
    const started = Date.now();
    try {
      await assert.rejects(sendMail({ host: '127.0.0.1', port: (trickle.address() as AddressInfo).port, timeoutMs: 1_000, deadlineMs: 1_500 },
        { from: 'a@example.com', to: ['b@example.com'], subject: 's', text: 't' }), /SMTP took longer than/);
      assert.ok(Date.now() - started < 5_000, `gave up after ${Date.now() - started} ms`);
    } finally {
      trickle.close();
    }
  });

  test('SMTP: a temporary failure is retried', async () => {
    const errors: Error[] = [];
    const n = createSmtpNotifier({ host: '127.0.0.1', port: smtp.port, from: 'keyhold@example.com', baseDelayMs: 1, onError: (e) => errors.push(e) });
    const before = smtp.received.length;
    smtp.failNext(1);
    await n.notify(note);
    assert.equal(smtp.received.length, before + 1);
    assert.deepEqual(errors, []);
  });

  test('SMTP: a recipient the relay refuses (a mailbox gone) does not silence the others; the failure is reported without the address', async () => {
    const errors: Error[] = [];
    const n = createSmtpNotifier({ host: '127.0.0.1', port: smtp.port, from: 'keyhold@example.com', baseDelayMs: 1, onError: (e) => errors.push(e) });
    smtp.refuse('left-the-company@example.com');
    const before = smtp.received.length;
    await n.notify({ ...note, recipients: [{ kind: 'email', id: 'left-the-company@example.com' }, { kind: 'email', id: 'oncall@example.com' }] });
    assert.deepEqual(smtp.received.slice(before).map((m) => m.to), [['oncall@example.com']], 'one message, to the mailbox that exists, not retried');
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.message, /1 of 2 recipients/);
    assert.ok(!errors[0]!.message.includes('left-the-company'), 'the report names no address');

    await n.notify({ ...note, recipients: [{ kind: 'email', id: 'left-the-company@example.com' }] });
    assert.equal(smtp.received.length, before + 1, 'nobody left to mail: nothing sent');
    assert.match(errors.at(-1)!.message, /refused every recipient/);
  });

  test('webhook: each delivery carries a timestamped HMAC-SHA256 signature the receiver can verify', async () => {
    const secret = 'a-webhook-secret-of-32-characters';
    await createWebhookNotifier({ url: hook.url, secret }).notify(note);
    const got = hook.received.at(-1)!;
    const ts = got.headers[TIMESTAMP_HEADER] as string;
    assert.equal(got.headers[SIGNATURE_HEADER], signNotification(secret, ts, got.body));
    assert.notEqual(got.headers[SIGNATURE_HEADER], signNotification('another-secret-of-32-characters!!', ts, got.body));
    assert.equal(JSON.parse(got.body).type, 'rotation.rolled-back');
  });

  test('webhook: 5xx is retried with backoff, a 4xx is not, and a failure is reported, never thrown', async () => {
    const errors: Error[] = [];
    const n = createWebhookNotifier({ url: hook.url, secret: 'a-webhook-secret-of-32-characters', baseDelayMs: 1, onError: (e) => errors.push(e) });
    let start = hook.received.length;
    hook.status.push(503, 502);
    await n.notify(note);
    assert.equal(hook.received.length - start, 3, 'two failures, then delivered');
    assert.deepEqual(errors, []);
    start = hook.received.length;
    hook.status.push(400);
    await n.notify(note);
    assert.equal(hook.received.length - start, 1, 'a 400 is not retried');
    assert.equal(errors.length, 1);
    assert.doesNotMatch(String((errors as Error[])[0]?.message), /127\.0\.0\.1/, 'the URL is not in the message');
    assert.throws(() => createWebhookNotifier({ url: 'http://example.com/hook', secret: 'a-webhook-secret-of-32-characters' }), /https/);
    assert.throws(() => createWebhookNotifier({ url: hook.url.replace('http://', 'http://bot:pw@'), secret: 'a-webhook-secret-of-32-characters' }), /user name or password/,
      'fetch refuses such a URL: every delivery would fail');
  });

  test('webhook: a metadata or link-local address is refused, and the server sends through the guarded fetch that refuses names resolving to one', async () => {
    for (const url of ['https://169.254.169.254/latest', 'https://[fe80::1]/', 'https://metadata.google.internal/x', 'https://[::ffff:169.254.169.254]/']) {
      assert.throws(() => createWebhookNotifier({ url, secret: 'a-webhook-secret-of-32-characters' }), /link-local or cloud metadata/, url);
    }
    const used: string[] = [];
    const errors: unknown[] = [];
    const guarded = guardedFetch(pinnedFetch());
    const n = notifierFromSettings({ webhook: { url: hook.url, secret: 'a-webhook-secret-of-32-characters' }, smtp: null }, (e) => errors.push(e), (async (input: string | URL, init?: RequestInit) => {
      used.push(String(input));
      return guarded(input, init);
    }) as typeof fetch);
    const start = hook.received.length;
    await n.notify(note);
    assert.deepEqual([used, errors, hook.received.length - start], [[hook.url], [], 1], 'delivered through the guarded fetch');
  });

  test('webhook: every delivery has an id, the same on each retry and signed with the body, so a receiver can drop duplicates and replays', async () => {
    const n = createWebhookNotifier({ url: hook.url, secret: 'a-webhook-secret-of-32-characters', baseDelayMs: 1 });
    const start = hook.received.length;
    hook.status.push(503);
    await n.notify(note);
    await n.notify(note);
    const got = hook.received.slice(start);
    assert.equal(got.length, 3);
    const ids = got.map((g) => JSON.parse(g.body).id as string);
    assert.match(ids[0]!, /^[0-9a-f-]{36}$/);
    assert.deepEqual(got.map((g) => g.headers[DELIVERY_HEADER]), ids, 'the header repeats the signed id');
    assert.equal(ids[0], ids[1], 'a retry is the same delivery');
    assert.notEqual(ids[1], ids[2], 'another notification is another delivery');
  });

  test('webhook: a receiver that redirects is not followed, not asked again, and the failure says why', async () => {
    const errors: Error[] = [];
    let asked = 0;
    const redirecting = createServer((_req, res) => {
      asked++;
      res.writeHead(307, { location: hook.url }).end();
    });
    await new Promise<void>((r) => redirecting.listen(0, '127.0.0.1', r));
    try {
      const n = createWebhookNotifier({ url: `http://127.0.0.1:${(redirecting.address() as AddressInfo).port}/`, secret: 'a-webhook-secret-of-32-characters', baseDelayMs: 1, onError: (e) => errors.push(e) });
      const start = hook.received.length;
      await n.notify(note);
      assert.equal(hook.received.length, start, 'the redirect target never got the notification');
      assert.equal(asked, 1, 'a redirect will not change on retry');
      assert.equal(errors.length, 1);
      assert.match(errors[0]!.message, /HTTP 307 \(redirects are not followed\)/);
    } finally {
      redirecting.closeAllConnections();
      await new Promise<void>((r) => redirecting.close(() => r()));
    }
  });
  test('webhook: a receiver that never answers times out instead of hanging the caller', async () => {
    const { createServer: create } = await import('node:net');
    const sockets: import('node:net').Socket[] = [];
    const silent = create((s) => void sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const errors: Error[] = [];
    const n = createWebhookNotifier({ url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}/`, secret: 'a-webhook-secret-of-32-characters', timeoutMs: 100, attempts: 2, baseDelayMs: 1, onError: (e) => errors.push(e) });
    await n.notify(note);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.message, /TimeoutError/);
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => silent.close(() => r()));
  });

  test('fan-out: one failing channel does not stop the others', async () => {
    const got: string[] = [];
    const fan = createFanoutNotifier([{ notify: async () => { throw new Error('down'); } }, { notify: async (n) => void got.push(n.type) }]);
    await fan.notify(note);
    assert.deepEqual(got, ['rotation.rolled-back']);
  });

  test('fan-out: a channel that throws before returning a promise neither stops the channels after it nor escapes', async () => {
    const got: string[] = [];
    const errors: unknown[] = [];
    const throwsAtOnce: Notifier = { notify: () => { throw new Error('not configured'); } };
    const fan = createFanoutNotifier([throwsAtOnce, { notify: async (n) => void got.push(n.type) }], (e) => errors.push(e));
    await fan.notify(note);
    assert.deepEqual(got, ['rotation.rolled-back']);
    assert.deepEqual(errors.map((e) => (e as Error).message), ['not configured'], 'the failure is reported');
  });
});
