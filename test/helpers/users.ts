import { generateSync } from 'otplib';
import type { Harness } from './harness.ts';

/** Helpers for tests of human users: HTTP calls through the in-process app, logins, TOTP codes on the fake clock. */

export const PASSWORD = 'amber-falcon-quarry-7';

export interface Reply {
  status: number;
  /** Parsed JSON of many shapes; each test asserts the fields it reads. */
  body: any;
  headers: Record<string, unknown>;
}

let ipCounter = 0;
/** A fresh source address per call, so one test's logins never spend another test's per-address budget. */
export function freshIp(): string {
  ipCounter++;
  return `10.${(ipCounter >> 16) & 255}.${(ipCounter >> 8) & 255}.${ipCounter & 255}`;
}

/** `tenant`: the tenant a root token acts in (x-keyhold-tenant); other credentials carry their own. */
export async function call(h: Harness, method: 'GET' | 'POST', url: string, opts: { token?: string; body?: unknown; ip?: string; tenant?: string } = {}): Promise<Reply> {
  const res = await h.app.inject({
    method, url,
    headers: { ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), ...(opts.tenant ? { 'x-keyhold-tenant': opts.tenant } : {}) },
    ...(opts.body !== undefined ? { payload: opts.body as object } : {}),
    remoteAddress: opts.ip ?? freshIp(),
  });
  return { status: res.statusCode, body: res.body === '' ? null : JSON.parse(res.body), headers: res.headers };
}

export function login(h: Harness, body: { tenant?: string; username: string; password?: string; totp?: string }, ip?: string): Promise<Reply> {
  return call(h, 'POST', '/v1/auth/login', { body: { tenant: 'default', password: PASSWORD, ...body }, ...(ip ? { ip } : {}) });
}

/** Logs in and returns the session token (fails the test otherwise). */
export async function sessionFor(h: Harness, username: string, extra: { password?: string; totp?: string; tenant?: string } = {}): Promise<string> {
  const res = await login(h, { username, ...extra });
  if (res.status !== 200) throw new Error(`login of ${username} failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.token as string;
}

let userCounter = 0;
/** A new user in the default tenant (created by root through the API); returns its id and name. */
export async function newUser(h: Harness, prefix = 'user', password = PASSWORD): Promise<{ id: string; username: string }> {
  const username = `${prefix}-${++userCounter}`;
  const res = await call(h, 'POST', '/v1/users', { token: h.rootToken, body: { username, password } });
  if (res.status !== 201) throw new Error(`creating ${username} failed: ${res.status} ${JSON.stringify(res.body)}`);
  return { id: res.body.id, username };
}

/** The TOTP code for a base32 secret at a time on the fake clock (default: now). */
export function codeAt(secret: string, atMs: number): string {
  return generateSync({ secret, epoch: Math.floor(atMs / 1000) });
}

/** A TOTP enrolment ticket for a user (of the default tenant unless named), issued by root through the API (for their first factor). */
export async function ticketFor(h: Harness, userId: string, opts: { ttlSeconds?: number; tenant?: string } = {}): Promise<string> {
  const body = opts.ttlSeconds !== undefined ? { body: { ttlSeconds: opts.ttlSeconds } } : {};
  const res = await call(h, 'POST', `/v1/users/${userId}/totp-ticket`, { token: h.rootToken, ...body, ...(opts.tenant ? { tenant: opts.tenant } : {}) });
  if (res.status !== 200) throw new Error(`issuing a ticket for ${userId} failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.ticket as string;
}

/**
 * Enrols and confirms TOTP for the session's user (a first factor: root issues the ticket it needs
 * first); returns the base32 secret. Leaves the clock one step later.
 */
export async function enrolTotp(h: Harness, token: string): Promise<string> {
  const me = await call(h, 'GET', '/v1/auth/whoami', { token });
  if (me.status !== 200) throw new Error(`whoami failed: ${me.status} ${JSON.stringify(me.body)}`);
  const ticket = await ticketFor(h, me.body.id as string, { tenant: me.body.tenant as string });
  const enrol = await call(h, 'POST', '/v1/auth/totp/enroll', { token, body: { ticket } });
  if (enrol.status !== 200) throw new Error(`enrol failed: ${enrol.status} ${JSON.stringify(enrol.body)}`);
  const secret = enrol.body.secret as string;
  const confirm = await call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code: codeAt(secret, h.clock.now()) } });
  if (confirm.status !== 200) throw new Error(`confirm failed: ${confirm.status} ${JSON.stringify(confirm.body)}`);
  nextStep(h);
  return secret;
}

/** Moves the fake clock to the start of the next 30-second TOTP step, so a new code exists. */
export function nextStep(h: Harness): void {
  h.clock.advance(30_000 - (h.clock.now() % 30_000));
}
