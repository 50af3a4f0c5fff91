import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { createManualClock } from '../../../../platform/clock.ts';
import { createMemoryCursorStore } from '../../delivery-ports.ts';
import { createAuditDelivery, type AuditDelivery } from '../../delivery.ts';
import type { AuditEvent } from '../../event.ts';
import { auditEvent, createMemoryAuditLog, seqs, waitFor } from '../testing.ts';
import { formatSyslogMessage, frameOctetCounted } from './format.ts';
import { createSyslogSink, UDP_MAX_BYTES } from './index.ts';

const FRAME = /^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ([\x21-\x7e]+) keyhold - AUDIT \[keyhold@32473 seq="(\d+)"(?: tenant="((?:[^"\\\]]|\\["\\\]])*)")?\] (\{[\x20-\x7e]*\})$/;

interface Parsed {
  pri: number;
  timestamp: string;
  hostname: string;
  seq: number;
  tenant: string | undefined;
  event: AuditEvent & { truncated?: boolean };
}

function parse(message: string): Parsed {
  const m = FRAME.exec(message);
  assert.ok(m, `not an RFC 5424 Keyhold frame: ${message.slice(0, 200)}`);
  return { pri: Number(m[1]), timestamp: m[2]!, hostname: m[3]!, seq: Number(m[4]), tenant: m[5], event: JSON.parse(m[6]!) };
}

/** Splits an RFC 6587 octet-counted stream into messages, however the bytes were chunked. */
function octetCountedParser(onMessage: (m: string) => void) {
  let buffered = Buffer.alloc(0);
  return (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      const space = buffered.indexOf(0x20);
      if (space < 0) return;
      const header = buffered.subarray(0, space).toString('ascii');
      assert.match(header, /^[1-9]\d*$/, 'frame must start with MSG-LEN');
      const length = Number(header);
      if (buffered.length < space + 1 + length) return;
      onMessage(buffered.subarray(space + 1, space + 1 + length).toString('utf8'));
      buffered = buffered.subarray(space + 1 + length);
    }
  };
}

function startDelivery(sink: ReturnType<typeof createSyslogSink>, log: ReturnType<typeof createMemoryAuditLog>, batchSize = 10): AuditDelivery {
  const delivery = createAuditDelivery({ source: log, sinks: [sink], cursors: createMemoryCursorStore(), clock: createManualClock(), timeoutMs: 1000, batchSize, backoff: { baseMs: 5, maxMs: 20, random: () => 0 } });
  delivery.start();
  return delivery;
}

async function udpListener(): Promise<{ socket: UdpSocket; port: number; messages: string[] }> {
  const socket = createSocket('udp4');
  const messages: string[] = [];
  socket.on('message', (m) => messages.push(m.toString('utf8')));
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { socket, port: socket.address().port, messages };
}

async function tcpListener(port = 0): Promise<{ server: Server; port: number; messages: string[]; connections: Set<Socket> }> {
  const messages: string[] = [];
  const connections = new Set<Socket>();
  const server = createServer((conn) => {
    connections.add(conn);
    conn.on('close', () => connections.delete(conn));
    conn.on('data', octetCountedParser((m) => messages.push(m)));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, messages, connections };
}

async function closeTcp(l: { server: Server; connections: Set<Socket> }) {
  for (const c of l.connections) c.destroy();
  await new Promise((resolve) => l.server.close(resolve));
}

describe('syslog audit sink', () => {
  test('a UDP listener receives one well-formed RFC 5424 datagram per event: notice when allowed, warning when denied or failed', async () => {
    const listener = await udpListener();
    const log = createMemoryAuditLog();
    log.append(2);
    log.append(1, { outcome: 'denied', reason: 'FORBIDDEN' });
    log.append(1, { outcome: 'failed', reason: 'UPSTREAM', tenantId: null });
    log.append(1);
    const delivery = startDelivery(createSyslogSink({ name: 'syslog', transport: 'udp', host: '127.0.0.1', port: listener.port, hostname: 'kh-node-1' }), log, 2);
    try {
      await waitFor('five datagrams', () => listener.messages.length === 5);
      const frames = listener.messages.map(parse);
      assert.deepEqual(frames.map((f) => f.seq), seqs(5));
      // facility 13 (log audit): 13 * 8 + 5 (notice) = 109, + 4 (warning) = 108
      assert.deepEqual(frames.map((f) => f.pri), [109, 109, 108, 108, 109]);
      assert.deepEqual(frames.map((f) => f.tenant), ['ten_acme', 'ten_acme', 'ten_acme', undefined, 'ten_acme']);
      assert.ok(frames.every((f) => f.hostname === 'kh-node-1'));
      assert.equal(frames[0]!.timestamp, new Date(log.events[0]!.time).toISOString());
      assert.deepEqual(frames.map((f) => f.event), log.events);
    } finally {
      await delivery.stop();
      listener.socket.close();
    }
  });

  test('an event too large for a datagram is cut to 8 KiB and stays a valid frame with valid JSON', async () => {
    const listener = await udpListener();
    const huge = auditEvent(1, { context: { justification: 'é'.repeat(20_000), requestId: 'req_1' } });
    const sink = createSyslogSink({ name: 'syslog', transport: 'udp', host: '127.0.0.1', port: listener.port });
    try {
      await sink.deliver([huge, auditEvent(2)], new AbortController().signal);
      await waitFor('two datagrams', () => listener.messages.length === 2);
      assert.ok(Buffer.byteLength(listener.messages[0]!) <= UDP_MAX_BYTES);
      const first = parse(listener.messages[0]!);
      assert.equal(first.seq, 1);
      assert.equal(first.event.truncated, true);
      assert.deepEqual(first.event.context, {});
      assert.equal(first.event.action, huge.action);
      assert.equal(parse(listener.messages[1]!).event.truncated, undefined);
    } finally {
      await sink.close!();
      listener.socket.close();
    }
  });

  test('a TCP listener receives every event once, in order, as octet-counted RFC 5424 frames', async () => {
    const listener = await tcpListener();
    const log = createMemoryAuditLog();
    log.append(50, { context: { userAgent: 'zapier/1.0 "quoted" ünïcode' } });
    const delivery = startDelivery(createSyslogSink({ name: 'syslog', transport: 'tcp', host: '127.0.0.1', port: listener.port }), log, 7);
    try {
      await waitFor('fifty frames', () => listener.messages.length === 50);
      const frames = listener.messages.map(parse);
      assert.deepEqual(frames.map((f) => f.seq), seqs(50));
      assert.deepEqual(frames.map((f) => f.event), log.events);
      assert.equal(listener.connections.size, 1, 'one connection is reused for every batch');
    } finally {
      await delivery.stop();
      await closeTcp(listener);
    }
  });

  test('a TCP collector that is down fails delivery, and once it listens everything arrives', async () => {
    const probe = await tcpListener();
    const port = probe.port;
    await closeTcp(probe);
    const log = createMemoryAuditLog();
    log.append(5);
    const delivery = startDelivery(createSyslogSink({ name: 'syslog', transport: 'tcp', host: '127.0.0.1', port }), log);
    let listener: Awaited<ReturnType<typeof tcpListener>> | undefined;
    try {
      await waitFor('failures', () => delivery.status()[0]!.consecutiveFailures >= 2);
      assert.match(delivery.status()[0]!.lastError ?? '', /ECONNREFUSED/);
      assert.equal(delivery.status()[0]!.cursor, 0);
      listener = await tcpListener(port);
      await waitFor('five frames', () => listener!.messages.length === 5);
      assert.deepEqual(listener.messages.map((m) => parse(m).seq), seqs(5));
      await waitFor('cursor', () => delivery.status()[0]!.cursor === 5);
      assert.equal(delivery.status()[0]!.consecutiveFailures, 0);
    } finally {
      await delivery.stop();
      if (listener) await closeTcp(listener);
    }
  });

  test('text a caller chose (line breaks, NUL, a forged message, separators) stays inside its JSON string: one printable line per event, framed by its length', () => {
    const forged = '\n<109>1 2026-01-01T00:00:00.000Z evil keyhold - AUDIT [keyhold@32473 seq="999"] {}\r\n';
    const hostile = [
      auditEvent(1, { context: { userAgent: `curl${forged}\u0000`, reason: 'a]"\\b' } }),
      auditEvent(2, { resource: { type: 'secret', id: null, name: 'x\u2028y\u2029z\u0085' }, reason: '\u001b[31mRED' }),
      auditEvent(3),
    ];
    const format = { facility: 13, hostname: 'kh', appName: 'keyhold', maxBytes: 65536 };
    const messages = hostile.map((e) => formatSyslogMessage(e, format));
    for (const m of messages) assert.ok(/^[\x20-\x7e]+$/.test(m.toString('latin1')), `only printable US-ASCII: ${m.toString('latin1').slice(0, 120)}`);
    const received: string[] = [];
    octetCountedParser((m) => received.push(m))(Buffer.concat(messages.map(frameOctetCounted)));
    assert.deepEqual(received.map((m) => parse(m).seq), [1, 2, 3], 'as many frames as events, none forged');
    assert.deepEqual(received.map((m) => parse(m).event), hostile, 'every field comes back as it was');
  });

  test('an event whose time no date can hold (a row written by hand) is sent with a nil timestamp, and the events after it still arrive', async () => {
    const listener = await udpListener();
    const log = createMemoryAuditLog();
    log.append(1);
    log.events.push(auditEvent(2, { time: 8.64e15 + 1 }));
    log.append(1);
    const delivery = startDelivery(createSyslogSink({ name: 'syslog', transport: 'udp', host: '127.0.0.1', port: listener.port }), log);
    try {
      await waitFor('three datagrams', () => listener.messages.length === 3);
      assert.match(listener.messages[1]!, /^<109>1 - \S+ keyhold - AUDIT \[keyhold@32473 seq="2" tenant="ten_acme"\] \{/);
      assert.equal((JSON.parse(listener.messages[1]!.slice(listener.messages[1]!.indexOf('{'))) as AuditEvent).time, 8.64e15 + 1);
      assert.deepEqual(listener.messages.map((m) => Number(/seq="(\d+)"/.exec(m)![1])), seqs(3));
    } finally {
      await delivery.stop();
      listener.socket.close();
    }
  });

  test('structured-data values escape quote, backslash and bracket; header fields drop spaces', () => {
    const message = formatSyslogMessage(auditEvent(7, { tenantId: 'a"b\\c]d' }), { facility: 4, hostname: 'my host', appName: 'keyhold', maxBytes: 8192 }).toString();
    assert.ok(message.startsWith('<37>1 2026-01-01T00:00:07.000Z myhost keyhold - AUDIT [keyhold@32473 seq="7" tenant="a\\"b\\\\c\\]d"] {'));
    assert.equal(parse(message).tenant, 'a\\"b\\\\c\\]d');
  });
});
