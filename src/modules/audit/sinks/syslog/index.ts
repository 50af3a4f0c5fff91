import { hostname as osHostname } from 'node:os';
import type { AuditSink } from '../../event.ts';
import { DEFAULT_FACILITY, formatSyslogMessage, frameOctetCounted, type SyslogFormat } from './format.ts';
import { createTcpSender } from './tcp.ts';
import { createUdpSender } from './udp.ts';

export { formatSyslogMessage, frameOctetCounted, severityOf } from './format.ts';

/** One UDP datagram stays within this (safe for loopback and for most collectors). */
export const UDP_MAX_BYTES = 8192;
export const TCP_DEFAULT_MAX_BYTES = 65536;

export interface SyslogSinkOptions {
  /** Stable name; it keys the delivery cursor. */
  name: string;
  transport: 'udp' | 'tcp';
  host: string;
  port: number;
  /** Defaults to 13 ("log audit"). */
  facility?: number;
  /** HOSTNAME field; defaults to this machine's name. */
  hostname?: string;
  /** APP-NAME field; defaults to "keyhold". */
  appName?: string;
  /** Per-message limit; UDP is capped at 8 KiB whatever is set. */
  maxMessageBytes?: number;
}

/**
 * Sends each event as an RFC 5424 message: over UDP one datagram per event (at most 8 KiB; UDP
 * itself may still lose a datagram unnoticed), over TCP with octet-counting framing (RFC 6587).
 * Allowed outcomes are severity notice, denied and failed ones warning.
 */
export function createSyslogSink(opts: SyslogSinkOptions): AuditSink {
  const facility = opts.facility ?? DEFAULT_FACILITY;
  if (!Number.isInteger(facility) || facility < 0 || facility > 23) throw new Error('syslog facility must be an integer 0..23');
  if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535) throw new Error('syslog port must be 1..65535');
  const limit = opts.transport === 'udp' ? UDP_MAX_BYTES : TCP_DEFAULT_MAX_BYTES;
  const format: SyslogFormat = {
    facility,
    hostname: opts.hostname ?? osHostname(),
    appName: opts.appName ?? 'keyhold',
    maxBytes: Math.min(opts.maxMessageBytes ?? limit, limit),
  };
  const udp = opts.transport === 'udp' ? createUdpSender(opts.host, opts.port) : null;
  const tcp = opts.transport === 'tcp' ? createTcpSender(opts.host, opts.port) : null;
  let tail: Promise<unknown> = Promise.resolve();

  return {
    name: opts.name,
    deliver(events, signal) {
      const messages = events.map((e) => formatSyslogMessage(e, format));
      const run = tail.then(() => (udp ? udp.send(messages, signal) : tcp!.write(Buffer.concat(messages.map(frameOctetCounted)), signal)));
      tail = run.catch(() => {});
      return run;
    },
    async close() {
      await tail;
      udp?.close();
      tcp?.close();
    },
  };
}
