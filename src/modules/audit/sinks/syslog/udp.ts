import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';

/** A connected UDP socket, reopened after any error; `send` resolves once the datagram left. */
export function createUdpSender(host: string, port: number) {
  let socket: Socket | null = null;
  let opening: Promise<Socket> | null = null;

  function open(): Promise<Socket> {
    opening ??= new Promise<Socket>((resolve, reject) => {
      const s = createSocket(isIPv6(host.replace(/^\[|\]$/g, '')) ? 'udp6' : 'udp4');
      const onError = (err: Error) => {
        s.close();
        reject(err);
      };
      s.once('error', onError);
      // Connected, so a closed port (ICMP unreachable) surfaces as an error on a later send.
      s.connect(port, host.replace(/^\[|\]$/g, ''), () => {
        s.off('error', onError);
        s.on('error', () => drop(s));
        s.unref();
        socket = s;
        resolve(s);
      });
    }).finally(() => {
      opening = null;
    });
    return opening;
  }

  function drop(s: Socket) {
    if (socket === s) socket = null;
    try {
      s.close();
    } catch {
      // already closed
    }
  }

  return {
    async send(datagrams: readonly Buffer[], signal: AbortSignal): Promise<void> {
      const s = socket ?? (await open());
      for (const d of datagrams) {
        signal.throwIfAborted();
        await new Promise<void>((resolve, reject) => {
          s.send(d, (err) => {
            if (err) {
              drop(s);
              reject(err);
            } else resolve();
          });
        });
      }
    },
    close(): void {
      if (socket) drop(socket);
    },
  };
}
