import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';

/**
 * Lets a close wait for the requests in flight, not for idle keep-alive clients. Node closes idle
 * connections once, when the close starts; a connection whose request was in flight then would stay
 * open for its client after the answer (up to fastify's 72 s keep-alive timeout), and the close with
 * it, past a service manager's stop timeout. So once closing, the last answer owed on a connection
 * says Connection: close (Node then ends the connection once it is written); one that was already
 * on its way ends its connection once written. A request pipelined behind it is still answered.
 * Returns whether the close has started, for the caller's onSend hook.
 */
export function endConnectionsOnClose(app: FastifyInstance): (socket: Socket) => boolean {
  let closing = false;
  /** Requests read on each connection and not yet answered (pipelined ones included). */
  const owed = new WeakMap<Socket, number>();
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  app.addHook('onRequest', (request, _reply, done) => {
    const socket = request.raw.socket;
    owed.set(socket, (owed.get(socket) ?? 0) + 1);
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    const socket = request.raw.socket;
    const left = Math.max(0, (owed.get(socket) ?? 0) - 1);
    owed.set(socket, left);
    // Answered before the close started, without the header: end it here instead.
    if (closing && left === 0 && !reply.raw.hasHeader('connection')) socket.destroySoon();
    done();
  });
  return (socket) => closing && (owed.get(socket) ?? 0) <= 1;
}
