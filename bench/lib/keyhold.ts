import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.ts';
import { spawnServer } from './spawn.ts';

export const SECRET_NAME = 'BENCH_KEY';
export const ENVIRONMENT = 'production';

export interface KeyholdTarget {
  /** The read endpoint under load. */
  url: string;
  headers: Record<string, string>;
  serverPid: number;
}

/**
 * Starts a real Keyhold server (`src/main/server.ts --dev`) on a fresh data directory and port 0,
 * writes one 64-byte secret value and checks it reads back. `databaseUrl` switches to PostgreSQL.
 */
export async function startKeyhold(opts: { label: string; cleanup: Cleanup; databaseUrl?: string; nodeArgs?: string[]; root?: string }): Promise<KeyholdTarget & { stop(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-bench-'));
  opts.cleanup.add(`remove ${dataDir}`, () => rmSync(dataDir, { recursive: true, force: true }));
  const server = await spawnServer({
    label: opts.label,
    script: 'src/main/server.ts',
    args: ['--dev'],
    ...(opts.nodeArgs ? { nodeArgs: opts.nodeArgs } : {}),
    ...(opts.root ? { root: opts.root } : {}),
    env: {
      ...withoutKeyholdSettings(process.env),
      KEYHOLD_DATA_DIR: dataDir,
      KEYHOLD_PORT: '0',
      KEYHOLD_LOG_LEVEL: 'info',
      ...(opts.databaseUrl ? { KEYHOLD_DATABASE_URL: opts.databaseUrl } : {}),
    },
    readyMsg: 'keyhold listening',
    cleanup: opts.cleanup,
  });
  const rootToken = readFileSync(join(dataDir, 'dev-root-token'), 'utf8').trim();
  const root = { authorization: `Bearer ${rootToken}` };
  const value = randomBytes(32).toString('hex'); // 64 ASCII characters: a 64-byte value
  await call(server.address, 'POST', '/v1/secrets', root, { name: SECRET_NAME, owner: 'bench' }, 201);
  await call(server.address, 'PUT', `/v1/secrets/${SECRET_NAME}/values/${ENVIRONMENT}`, root, { value }, 200);
  // The reader is an automation's machine identity holding `builder` in production: every read goes
  // through token lookup, grants → roles, Cedar (`use`), and decryption, as a real run-time read does.
  const machine = (await call(server.address, 'POST', '/v1/machines', root, { name: 'bench-runner', kind: 'client_secret' }, 201)) as { id: string; clientId: string; clientSecret: string };
  await call(server.address, 'POST', '/v1/grants', root, { principalType: 'machine', principalId: machine.id, role: 'builder', environments: [ENVIRONMENT] }, 201);
  const exchanged = (await call(server.address, 'POST', '/v1/auth/token', {}, { grant_type: 'client_credentials', client_id: machine.clientId, client_secret: machine.clientSecret }, 200)) as { access_token: string };
  const headers = { authorization: `Bearer ${exchanged.access_token}` };
  const url = `${server.address}/v1/secrets/${SECRET_NAME}/values/${ENVIRONMENT}`;
  const read = (await call(server.address, 'GET', new URL(url).pathname, headers, undefined, 200)) as { value?: unknown };
  if (read.value !== value) throw new Error(`${opts.label}: the value read back differs from the one written`);
  return { url, headers, serverPid: server.pid, stop: server.stop };
}

/** The bench's own KEYHOLD_* variables must not leak in: the server rejects settings it does not know. */
function withoutKeyholdSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([key]) => !key.startsWith('KEYHOLD_')));
}

async function call(base: string, method: string, path: string, headers: Record<string, string>, body: unknown, expected: number): Promise<unknown> {
  const res = await fetch(base + path, {
    method,
    headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  if (res.status !== expected) throw new Error(`${method} ${path}: expected ${expected}, got ${res.status}: ${text.slice(0, 500)}`);
  return JSON.parse(text) as unknown;
}
