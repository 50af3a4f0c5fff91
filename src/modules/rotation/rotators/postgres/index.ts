import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { fail } from '../../../../errors/index.ts';
import { parseCredentialJson } from '../credential-json.ts';
import { randomValue } from '../random/index.ts';
import { setting, type Rotator, type RotatorContext } from '../types.ts';
import { scramVerifier } from './scram.ts';

const FIELDS = ['host', 'port', 'database', 'adminUser', 'adminPasswordSecret', 'strategy', 'role', 'roles', 'passwordLength', 'timeoutMs'];
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

interface Settings {
  host: string; port: number; database: string; adminUser: string; adminPasswordSecret: string | undefined;
  strategy: 'single' | 'alternating'; roles: string[]; passwordLength: number; timeoutMs: number;
}

function parse(s: Record<string, unknown>): Settings {
  setting.only(s, FIELDS);
  const strategy = (s.strategy ?? 'single') as Settings['strategy'];
  if (strategy !== 'single' && strategy !== 'alternating') fail('ROTATOR_UNAVAILABLE', 'settings.strategy must be single or alternating');
  const roles = strategy === 'single' ? [setting.str(s, 'role', { max: 63 })!] : (s.roles as string[]);
  if (strategy === 'alternating' && (!Array.isArray(roles) || roles.length !== 2 || roles[0] === roles[1])) {
    fail('ROTATOR_UNAVAILABLE', 'settings.roles must name two different roles for the alternating strategy');
  }
  for (const r of roles) if (typeof r !== 'string' || !ROLE_NAME.test(r)) fail('ROTATOR_UNAVAILABLE', 'role names must be lower-case letters, digits and _ (at most 63)');
  return {
    host: setting.str(s, 'host', { max: 255 })!, port: setting.int(s, 'port', 1, 65535, 5432),
    database: setting.str(s, 'database', { max: 63 })!, adminUser: setting.str(s, 'adminUser', { max: 63 })!,
    adminPasswordSecret: setting.str(s, 'adminPasswordSecret', { optional: true, max: 128 }),
    strategy, roles, passwordLength: setting.int(s, 'passwordLength', 24, 128, 32), timeoutMs: setting.int(s, 'timeoutMs', 500, 60_000, 10_000),
  };
}

/**
 * Alternating values are `{"username","password"}` JSON (dependents need to know which role); single ones the password.
 * Null when an alternating value is not that; one naming a field twice throws (which role or password it means depends on the reader).
 */
function decode(strategy: Settings['strategy'], value: string | null, what = 'the value'): { username: string | null; password: string } | null {
  if (value === null) return null;
  if (strategy === 'single') return { username: null, password: value };
  const v = parseCredentialJson(value, what, ['username', 'password']) as { username?: unknown; password?: unknown } | null | undefined;
  return typeof v?.username === 'string' && typeof v.password === 'string' ? { username: v.username, password: v.password } : null;
}

/**
 * Ties a client to the step's signal: on abort its socket is destroyed, which fails a connect (even one the server
 * accepted and never answered) or a statement in flight at once. Answers how to untie it once the client is ended.
 */
function cutOffOnAbort(client: pg.Client, signal: AbortSignal): () => void {
  signal.throwIfAborted();
  const cut = () => client.connection.stream.destroy(new Error('aborted: the rotation step ran out of time'));
  signal.addEventListener('abort', cut, { once: true });
  return () => signal.removeEventListener('abort', cut);
}

/** A client of the policy's server as `user`: connect and each statement bounded by `timeoutMs` on this side too. */
function clientFor(s: Settings, user: string, password: string | undefined): pg.Client {
  const client = new pg.Client({
    host: s.host, port: s.port, database: s.database, user, ...(password ? { password } : {}),
    connectionTimeoutMillis: s.timeoutMs, statement_timeout: s.timeoutMs, query_timeout: s.timeoutMs,
  });
  client.on('error', () => {});
  return client;
}

/**
 * PostgreSQL role password (SPEC §6). `single`: the role's password changes, so the old one stops
 * working at once. `alternating` (as AWS and Infisical do): two roles take turns; each rotation
 * sets a new password on the role not in use and hands that role out, so the role handed out last
 * time keeps its password until the rotation after next — each credential lives two intervals.
 * Passwords are sent as SCRAM verifiers, never in plaintext, so they stay out of server logs.
 */
export function createPostgresRotator(): Rotator {
  async function admin<T>(rc: RotatorContext, s: Settings, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const password = s.adminPasswordSecret ? await rc.resolve(s.adminPasswordSecret) : undefined;
    const client = clientFor(s, s.adminUser, password);
    const untie = cutOffOnAbort(client, rc.signal);
    try {
      try {
        await client.connect();
      } catch (err) {
        throw new Error(`cannot connect to PostgreSQL as the admin user (${(err as { code?: string }).code ?? (err as Error).name})`);
      }
      return await fn(client);
    } finally {
      // Still tied while it ends: a server that never closes its side cannot hold the step either.
      await client.end().catch(() => {});
      untie();
    }
  }
  const setPassword = (c: pg.Client, role: string, password: string) =>
    c.query(`ALTER ROLE ${c.escapeIdentifier(role)} PASSWORD ${c.escapeLiteral(scramVerifier(password))}`);

  const target = (rc: RotatorContext, s: Settings) => (typeof rc.state.role === 'string' ? rc.state.role : s.roles[0]!);
  /**
   * The role whose password `value` is. An alternating value names it, and a rollback may apply one no rotation made
   * (written by hand, so no state says which role): the name decides, and must be one of the two configured roles.
   */
  const roleFor = (rc: RotatorContext, s: Settings, value: string): { role: string; password: string } => {
    const v = decode(s.strategy, value);
    if (s.strategy === 'single') return { role: target(rc, s), password: v!.password };
    if (!v || !s.roles.includes(v.username!)) throw new Error('the value is not {"username","password"} naming one of settings.roles');
    return { role: v.username!, password: v.password };
  };

  return {
    type: 'postgres',
    validate: (s) => void parse(s),
    secretRefs(s) {
      const { adminPasswordSecret } = parse(s);
      return adminPasswordSecret ? [{ field: 'adminPasswordSecret', name: adminPasswordSecret }] : [];
    },
    async generate(rc) {
      const s = parse(rc.settings);
      const password = randomValue({ length: s.passwordLength, alphabet: ALNUM });
      if (s.strategy === 'single') return { value: password, state: { role: s.roles[0] } };
      const live = decode('alternating', rc.current, 'the current value')?.username;
      const role = live === s.roles[0] ? s.roles[1]! : s.roles[0]!;
      return { value: JSON.stringify({ username: role, password }), state: { role } };
    },
    async apply(rc, value) {
      const s = parse(rc.settings);
      const { role, password } = roleFor(rc, s, value);
      await admin(rc, s, (c) => setPassword(c, role, password));
    },
    async test(rc, value) {
      const s = parse(rc.settings);
      const { role, password } = roleFor(rc, s, value);
      const client = clientFor(s, role, password);
      const untie = cutOffOnAbort(client, rc.signal);
      try {
        await client.connect();
        await client.query('select 1');
        return { ok: true, detail: `logged in as ${role} and ran select 1` };
      } catch (err) {
        return { ok: false, detail: `login as ${role} failed (${(err as { code?: string }).code ?? (err as Error).name})` };
      } finally {
        await client.end().catch(() => {});
        untie();
      }
    },
    async restore(rc) {
      const s = parse(rc.settings);
      const role = target(rc, s);
      // The role's password before this rotation: the current value (single), or the value it was handed out with last (alternating).
      const before = s.strategy === 'single' ? decode('single', rc.current) : [rc.current, rc.previous].map((v) => decode('alternating', v)).find((v) => v?.username === role) ?? null;
      await admin(rc, s, (c) => setPassword(c, role, before?.password ?? randomBytes(32).toString('base64url')));
      return before
        ? { ok: true, detail: `${role}: the password before the rotation is set again` }
        : { ok: true, detail: `${role}: no earlier password is known; the new one was replaced by an unknown random one` };
    },
    async finalize() {},
    async sandbox(rc) {
      const s = parse(rc.settings);
      const suffix = randomBytes(4).toString('hex');
      const scratch = s.roles.map((r) => `${r.slice(0, 50)}_rh_${suffix}`);
      const password = randomValue({ length: s.passwordLength, alphabet: ALNUM });
      await admin(rc, s, async (c) => {
        for (const r of scratch) await c.query(`CREATE ROLE ${c.escapeIdentifier(r)} LOGIN PASSWORD ${c.escapeLiteral(scramVerifier(password))}`);
      });
      const settings = { ...rc.settings, ...(s.strategy === 'single' ? { role: scratch[0] } : { roles: scratch }) };
      return {
        settings, currentState: { role: scratch[0] },
        current: s.strategy === 'single' ? password : JSON.stringify({ username: scratch[0], password }),
        cleanup: (signal) => admin({ ...rc, signal }, s, async (c) => {
          for (const r of scratch) await c.query(`DROP ROLE IF EXISTS ${c.escapeIdentifier(r)}`);
        }),
      };
    },
  };
}
