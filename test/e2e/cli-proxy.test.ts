import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { once } from 'node:events';
import { join } from 'node:path';
import { promisify } from 'node:util';

/** The CLI binary under a proxy configuration: what reaches this machine's server, and what reaches the proxy. */

const KEYHOLD = join(import.meta.dirname, '..', '..', 'bin', 'keyhold');
const TOKEN = 'kh_proxy_canary_4f1c2a';

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

test('with NODE_USE_ENV_PROXY and HTTP_PROXY set, a loopback server is reached directly and the proxy never sees the token', async () => {
  const atServer: string[] = [];
  const server = createServer((req, res) => {
    atServer.push(`${req.method} ${req.url} ${req.headers.authorization ?? ''}`);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ initialized: true, sealed: false, progress: 0, threshold: 2, shares: 3 }));
  });
  // What a proxy would be handed: a plain request, or the bytes of a CONNECT tunnel.
  const atProxy: string[] = [];
  const proxy = createServer((req, res) => {
    atProxy.push(`${req.method} ${req.url} ${req.headers.authorization ?? ''}`);
    res.end('{}');
  });
  proxy.on('connect', (req, socket: Socket) => {
    atProxy.push(`CONNECT ${req.url}`);
    socket.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
  });
  const [serverPort, proxyPort] = [await listen(server), await listen(proxy)];
  try {
    const proxyUrl = `http://127.0.0.1:${proxyPort}`;
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KEYHOLD_') && !/proxy/i.test(k)));
    const run = await promisify(execFile)(KEYHOLD, ['status', '--json'], {
      env: { ...env, NODE_USE_ENV_PROXY: '1', HTTP_PROXY: proxyUrl, http_proxy: proxyUrl, KEYHOLD_ADDR: `http://127.0.0.1:${serverPort}`, KEYHOLD_TOKEN: TOKEN },
      timeout: 30_000,
    }).catch((err: { code?: number; stdout?: string; stderr?: string }) => err);
    assert.deepEqual(atProxy, [], 'the proxy was handed a request for this machine');
    assert.equal(atServer.length, 1, `the server was not reached; the CLI said: ${run.stderr}`);
    assert.match(atServer[0]!, new RegExp(TOKEN));
  } finally {
    server.close();
    proxy.close();
    server.closeAllConnections();
    proxy.closeAllConnections();
  }
});
