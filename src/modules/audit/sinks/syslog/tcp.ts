import { connect, type Socket } from 'node:net';

/**
 * One TCP connection, opened on demand and dropped on any error or abort (a half-written frame
 * would corrupt the octet-counted stream, so an aborted write always costs the connection).
 * `write` resolves once the bytes are handed to the kernel.
 */
export function createTcpSender(host: string, port: number) {
  let socket: Socket | null = null;

  function open(signal: AbortSignal): Promise<Socket> {
    return new Promise<Socket>((resolve, reject) => {
      const s = connect({ host: host.replace(/^\[|\]$/g, ''), port });
      const onAbort = () => {
        s.destroy();
        reject(signal.reason);
      };
      const onError = (err: Error) => {
        signal.removeEventListener('abort', onAbort);
        s.destroy();
        reject(err);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      s.once('error', onError);
      s.once('connect', () => {
        signal.removeEventListener('abort', onAbort);
        s.off('error', onError);
        s.setNoDelay(true);
        s.setKeepAlive(true, 30_000);
        s.on('error', () => drop(s));
        s.on('close', () => drop(s));
        // The collector never talks back; anything it sends is discarded.
        s.resume();
        s.unref();
        socket = s;
        resolve(s);
      });
    });
  }

  function drop(s: Socket) {
    if (socket === s) socket = null;
    s.destroy();
  }

  return {
    async write(bytes: Buffer, signal: AbortSignal): Promise<void> {
      signal.throwIfAborted();
      const s = socket && !socket.destroyed && socket.writable ? socket : await open(signal);
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          drop(s);
          reject(signal.reason);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        s.write(bytes, (err) => {
          signal.removeEventListener('abort', onAbort);
          if (err) {
            drop(s);
            reject(err);
          } else resolve();
        });
      });
    },
    close(): void {
      if (socket) drop(socket);
    },
  };
}
