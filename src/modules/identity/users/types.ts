import { fail } from '../../../errors/index.ts';
import { isMailAddress } from '../../../platform/mail-address.ts';
import type { TenantContext } from '../../shared/context.ts';

/** A person in one tenant, as the API shows it (never the password hash or TOTP secret). */
export interface User {
  id: string;
  username: string;
  totpEnabled: boolean;
  createdAt: string;
  passwordChangedAt: string;
  disabledAt: string | null;
  /** Where notifications reach them (shown to tenant admins; never audited or logged). */
  email: string | null;
}

export interface UserRow {
  id: string;
  tenant_id: string;
  username: string;
  totp_enabled: number;
  created_at: number;
  password_changed_at: number;
  disabled_at: number | null;
  email: string | null;
}

export const USER_COLUMNS = ['id', 'tenant_id', 'username', 'totp_enabled', 'created_at', 'password_changed_at', 'disabled_at', 'email'] as const;

export function toUser(row: UserRow): User {
  const iso = (ms: number) => new Date(ms).toISOString();
  return {
    id: row.id,
    username: row.username,
    totpEnabled: row.totp_enabled === 1,
    createdAt: iso(row.created_at),
    passwordChangedAt: iso(row.password_changed_at),
    disabledAt: row.disabled_at === null ? null : iso(row.disabled_at),
    email: row.email,
  };
}

/** Usernames: lower-case letters, digits and . _ -, starting with a letter; unique per tenant. */
export const USERNAME = /^[a-z][a-z0-9._-]*$/;
export const MAX_USERNAME_LENGTH = 64;

export function assertUsername(username: string): void {
  if (username.length > MAX_USERNAME_LENGTH || !USERNAME.test(username)) {
    fail('VALIDATION_FAILED', `username: lower-case letters, digits and . _ -, starting with a letter, at most ${MAX_USERNAME_LENGTH} characters`);
  }
}

/** The longest address SMTP carries (RFC 5321's path limit, less its brackets). */
export const MAX_EMAIL_LENGTH = 254;

/** An e-mail address for a user: a bare one the SMTP channel can send to (platform/mail-address.ts). Never echoed back: it is personal data. */
export function assertUserEmail(email: string): void {
  if (email.length > MAX_EMAIL_LENGTH || !isMailAddress(email)) {
    fail('VALIDATION_FAILED', `email: a bare address such as ann@example.com (no display name, brackets or list), at most ${MAX_EMAIL_LENGTH} characters`);
  }
}

/** The user and session behind a request; the self-service endpoints (logout, step-up, password, TOTP) need one. */
export interface SessionActor {
  tenantId: string;
  userId: string;
  sessionId: string;
}

export function sessionActorOf(ctx: TenantContext): SessionActor {
  const { actor } = ctx;
  if (actor.type !== 'user' || !actor.credentialId) fail('FORBIDDEN', 'this needs a user session (keyhold login), not an API token');
  return { tenantId: ctx.tenantId, userId: actor.id, sessionId: actor.credentialId };
}
