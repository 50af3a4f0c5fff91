import { constantTimeEqual, randomToken } from '../../../crypto/bytes.ts';
import { fail } from '../../../errors/index.ts';
import { hashToken } from '../../auth/token-service.ts';

/**
 * One-time TOTP enrolment tickets: a tenant admin (or root) issues one for a user, and the user's
 * first factor can be enrolled only with it, so a password alone never yields a second factor.
 */

export const TICKET_PREFIX = 'khe_';
export const DEFAULT_TICKET_TTL_SECONDS = 24 * 3600;
export const MIN_TICKET_TTL_SECONDS = 5 * 60;
export const MAX_TICKET_TTL_SECONDS = 7 * 24 * 3600;
/** Longer presented tickets are not looked at (a real one is the prefix and 43 characters). */
export const MAX_TICKET_LENGTH = 128;

/** A ticket: 256 random bits, shown once; only `hashTicket` of it is stored. */
export function newTicket(): string {
  return TICKET_PREFIX + randomToken(32);
}

/** SHA-256 is enough for 256-bit random tickets, as for session tokens: nothing to guess, nothing to slow down. */
export function hashTicket(ticket: string): string {
  return hashToken(ticket);
}

/** The lifetime asked for, in ms: the default when none is given; outside the bounds is VALIDATION_FAILED. */
export function ticketTtlMs(seconds: number | undefined): number {
  if (seconds === undefined) return DEFAULT_TICKET_TTL_SECONDS * 1000;
  if (!Number.isInteger(seconds) || seconds < MIN_TICKET_TTL_SECONDS || seconds > MAX_TICKET_TTL_SECONDS) {
    fail('VALIDATION_FAILED', `ttlSeconds must be a whole number from ${MIN_TICKET_TTL_SECONDS} to ${MAX_TICKET_TTL_SECONDS}`);
  }
  return seconds * 1000;
}

/**
 * Whether `presented` is the user's outstanding ticket and still live at `now`, compared in constant
 * time. Only a first check: the guarded UPDATE that consumes the ticket decides between two uses.
 */
export function ticketMatches(presented: string | undefined, stored: { totp_ticket_hash: string | null; totp_ticket_expires_at: number | null }, now: number): boolean {
  if (presented === undefined || presented.length > MAX_TICKET_LENGTH || stored.totp_ticket_hash === null) return false;
  if (stored.totp_ticket_expires_at === null || stored.totp_ticket_expires_at <= now) return false;
  return constantTimeEqual(Buffer.from(hashTicket(presented), 'base64url'), Buffer.from(stored.totp_ticket_hash, 'base64url'));
}
