import { fail } from '../../errors/index.ts';

/** Secret names: stable identifiers such as PAYMENT_PROCESSOR_API_KEY or stripe.live-key. */
export const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
/** Tenant and environment names: lower-case slugs. */
export const SLUG = /^[a-z][a-z0-9-]*$/;

export function assertSecretName(name: string, maxLength: number): void {
  if (name.length === 0 || name.length > maxLength || !SECRET_NAME.test(name)) {
    fail('INVALID_NAME', `secret names start with a letter or underscore, use letters, digits, _ . - and are at most ${maxLength} characters`);
  }
}

export function assertSlug(kind: 'tenant' | 'environment', name: string): void {
  if (name.length === 0 || name.length > 63 || !SLUG.test(name)) {
    fail('INVALID_NAME', `${kind} names are lower-case letters, digits and '-', start with a letter, at most 63 characters`);
  }
}
