import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeMail, type DecodedMail } from '../../../../test/fixtures/mime-decode.ts';
import { startSmtpServer } from '../../../../test/fixtures/smtp-server.ts';
import { sendMail, type Mail } from './index.ts';
import { formatMessage } from './message.ts';

/** What a relay receives is 7-bit, in short lines, and reads back (as a mail client decodes it) as exactly what was sent. */

let smtp: Awaited<ReturnType<typeof startSmtpServer>>;
describe('SMTP messages', () => {
  before(async () => {
    smtp = await startSmtpServer();
  });
  after(() => smtp.close());

  /** Sends `mail` through the fixture relay and decodes what it received, after checking every line's octets and length. */
  async function roundTrip(mail: Partial<Mail>): Promise<DecodedMail> {
    await sendMail({ host: '127.0.0.1', port: smtp.port }, { from: 'keyhold@example.com', to: ['ops@example.com'], subject: 's', text: 't', ...mail });
    const received = smtp.received.at(-1)!;
    const decoded = decodeMail(received.data);
    const blank = decoded.lines.indexOf('');
    decoded.lines.forEach((line, i) => {
      assert.match(line, /^[\x20-\x7e\t]*$/, `line ${i + 1} is printable ASCII: no 8-bit octet goes out without 8BITMIME`);
      const limit = i < blank ? 78 : 76;
      assert.ok(line.length <= limit, `line ${i + 1} has ${line.length} characters (at most ${limit} in the ${i < blank ? 'header' : 'body'})`);
    });
    return decoded;
  }

  const long = `Justification: ${'Zoë checks the payout batch of ß-GmbH 🧾, line after line; '.repeat(90)}`.slice(0, 5000);

  const cases: Array<{ name: string; subject: string; text: string }> = [
    { name: 'accents, emoji and a 5,000-character line', subject: '[Keyhold] Break-glass by Zoë Ångström 🚨: reveal of STRIPE_KEY — «prod»', text: `Reason:\n${long}\nend` },
    { name: 'lines that start with a dot, a lone dot, trailing blanks and equals signs', subject: 'dots', text: '.hidden\n.\n..two\ntrailing space \ntrailing tab\t\na=b =3D =\n\n\nlast' },
    { name: 'a plain ASCII subject too long for one line', subject: `[Keyhold] ${'approval wanted for a rather long list of secrets '.repeat(6)}`.trim(), text: 'x' },
    { name: 'a subject with one word longer than a line, and text that looks encoded', subject: `${'a'.repeat(1200)} =?utf-8?q?not_encoded?= end`, text: '=?utf-8?b?eA==?=' },
    { name: 'control characters and several scripts', subject: 'tab\there \u0007bell Привет 你好 مرحبا', text: 'nul\u0000 esc\u001b del\u007f Привет\r\nwindows\rmac\nunix' },
    { name: 'empty text', subject: '', text: '' },
  ];

  for (const c of cases) {
    test(`the subject and text arrive decoded as sent: ${c.name}`, async () => {
      const got = await roundTrip({ subject: c.subject, text: c.text });
      assert.equal(got.header('Subject'), c.subject);
      assert.equal(got.body, c.text.replace(/\r\n|\r/g, '\n'), 'the same text, every line break a line break');
      assert.equal(got.header('Content-Transfer-Encoding'), 'quoted-printable');
      assert.equal(got.header('Content-Type'), 'text/plain; charset=utf-8');
    });
  }

  test('a CR or LF in the subject or any header value never starts a header: it reads as a space', async () => {
    for (const subject of ['Rotation failed\r\nBcc: attacker@example.com', 'Zoë\nBcc: attacker@example.com', 'x\r\n\r\nbody', `${'é'.repeat(100)}\rBcc: attacker@example.com`]) {
      const got = await roundTrip({ subject, headers: { 'X-Keyhold-Type': 'rotation.failed\r\nBcc: attacker@example.com', 'X-Note': 'ü\nX-Evil: 1' } });
      assert.deepEqual(got.headers.map(([n]) => n.toLowerCase()).filter((n) => n === 'bcc' || n === 'x-evil'), []);
      assert.equal(got.header('Subject'), subject.replace(/[\r\n]+/g, ' '));
      assert.equal(got.header('X-Keyhold-Type'), 'rotation.failed Bcc: attacker@example.com');
      assert.equal(got.header('X-Note'), 'ü X-Evil: 1');
      assert.equal(got.body, 't', 'the body is untouched');
    }
  });

  test('a header name that is not a field name is refused before anything is sent', async () => {
    const before = smtp.received.length;
    for (const name of ['X-A\r\nBcc', 'X A', 'X:A', '', 'Ä']) {
      await assert.rejects(sendMail({ host: '127.0.0.1', port: smtp.port }, { from: 'a@example.com', to: ['b@example.com'], subject: 's', text: 't', headers: { [name]: 'v' } }), /header name/);
    }
    assert.equal(smtp.received.length, before);
  });

  test('a long To list is folded between addresses, and the MIME headers cannot be overridden', async () => {
    const listed = Array.from({ length: 60 }, (_, i) => `oncall-${i}@team.example.com`);
    const got = await roundTrip({ to: listed, headers: { to: listed.join(', '), 'content-transfer-encoding': '8bit', 'Content-Type': 'text/html' }, text: 'héllo' });
    assert.equal(got.header('To'), listed.join(', '));
    assert.equal(got.headers.filter(([n]) => n.toLowerCase() === 'to').length, 1, 'one To header, whatever its case');
    assert.equal(got.header('Content-Type'), 'text/plain; charset=utf-8');
    assert.equal(got.body, 'héllo');
    assert.deepEqual(smtp.received.at(-1)!.to, listed);
  });

  test('the Date header has a numeric zone, as RFC 5322 asks of a sender ("GMT" is obsolete syntax)', () => {
    const message = formatMessage({ from: 'a@example.com', to: ['b@example.com'], subject: 's', text: 't' }, new Date(Date.UTC(2026, 1, 3, 4, 5, 6)));
    assert.equal(decodeMail(message.replaceAll('\r\n', '\n')).header('Date'), 'Tue, 03 Feb 2026 04:05:06 +0000');
  });
});
