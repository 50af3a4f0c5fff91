import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { errorCatalogue, type ErrorCode } from '../errors/index.ts';
import { SECURITY_HEADERS } from './security-headers.ts';

/** How long a client may take to send its headers, then its whole request: a slow client holds a socket no longer. */
export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 30_000;

function codeOf(err: NodeJS.ErrnoException): { code: ErrorCode; message: string } {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return { code: 'REQUEST_TIMEOUT', message: 'the request did not arrive in time' };
  if (err.code === 'HPE_HEADER_OVERFLOW') return { code: 'HEADERS_TOO_LARGE', message: 'the request headers are larger than the server accepts (16 KB)' };
  return { code: 'MALFORMED_REQUEST', message: 'the request is not well-formed HTTP/1.1' };
}

/**
 * Answers a request Node's HTTP parser refused before fastify saw it (headers too large, not HTTP,
 * too slow) in the catalogue's shape, with the headers every answer carries, then closes the
 * connection. There is no request yet, so the request id is made here; the parser's error is not
 * echoed (it quotes the bytes it choked on).
 */
export function clientErrorHandler(this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const { code, message } = codeOf(err);
  const status = errorCatalogue[code].status;
  const requestId = randomUUID();
  this.log.debug({ code, parserError: err.code }, 'refused a malformed or slow request');
  if (socket.writable) {
    const body = JSON.stringify({ error: { code, message, requestId } });
    const headers = Object.entries({ ...SECURITY_HEADERS, 'cache-control': 'no-store', 'x-request-id': requestId }).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n`
      + `${headers}connection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}
