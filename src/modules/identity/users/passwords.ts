import { randomBytes } from 'node:crypto';
import { hash, verify, type Algorithm, type Options } from '@node-rs/argon2';
import { fail } from '../../../errors/index.ts';

/** The hash parameters (OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane). Stored in each hash, so raising them later is safe. */
export interface PasswordHashParams {
  memoryCost: number;
  timeCost: number;
}

export const DEFAULT_HASH_PARAMS: PasswordHashParams = { memoryCost: 19_456, timeCost: 2 };

// @node-rs/argon2 declares Algorithm as an ambient const enum, which type stripping cannot inline.
const ARGON2ID = 2 as Algorithm;

export const MIN_PASSWORD_LENGTH = 12;
export const MAX_PASSWORD_LENGTH = 1024;

/**
 * The most common passwords that are 12 characters or longer (shorter ones fail the length rule
 * anyway). Compared case-insensitively. Not a breach corpus: just the ones every guesser tries first.
 */
const COMMON_PASSWORDS = new Set([
  '123456789012', '1234567890123', '12345678901234', '123456789123', '111111111111', '000000000000',
  '123123123123', '987654321098', 'qwertyuiop12', 'qwertyuiopas', 'qwertyuiop123', 'qwerty123456',
  '1q2w3e4r5t6y', '1qaz2wsx3edc', 'asdfghjkl123', 'zaq12wsxcde3', 'password1234', 'password12345',
  'password123456', 'password123!', 'passwordpassword', 'password1!23', 'p@ssw0rd1234', 'passw0rd1234',
  'letmein12345', 'letmeinplease', 'welcome12345', 'welcome123456', 'iloveyou1234', 'trustno1trustno1',
  'administrator', 'administrator1', 'admin1234567', 'adminadmin123', 'changeme1234', 'changemenow1',
  'football1234', 'baseball1234', 'starwars1234', 'monkey123456', 'sunshine1234', 'princess1234',
  'dragon123456', 'master123456', 'superman1234', 'michael12345', 'abcdefghijkl', 'abcdef123456',
  'abc123abc123', 'correcthorsebatterystaple', 'correct horse battery staple', 'keyhold12345', 'keyholdkeyhold',
  'secret123456', 'mypassword123', 'thisismypassword', 'qazwsxedcrfv', 'q1w2e3r4t5y6',
]);

/** Refuses a new password that is too short, too long, one repeated character, on the common list, or the username. */
export function assertStrongPassword(password: string, username: string): void {
  const length = [...password].length;
  if (length > MAX_PASSWORD_LENGTH) fail('VALIDATION_FAILED', `password: at most ${MAX_PASSWORD_LENGTH} characters`);
  if (length < MIN_PASSWORD_LENGTH) fail('WEAK_PASSWORD', `the password needs at least ${MIN_PASSWORD_LENGTH} characters`);
  const lower = password.toLowerCase();
  const name = username.toLowerCase();
  const hasName = name.length >= 4 ? lower.includes(name) : lower === name;
  if (new Set(lower).size === 1 || COMMON_PASSWORDS.has(lower) || hasName) {
    fail('WEAK_PASSWORD', 'the password is too common or too easy to guess (it must not contain the username); choose another');
  }
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(passwordHash: string, password: string): Promise<boolean>;
  /**
   * Spends the same work as a real verification against a hash that matches nothing, so an unknown
   * account takes as long to refuse as a wrong password.
   */
  burn(password: string): Promise<void>;
}

/** argon2id hashing; the dummy hash for `burn` is computed once, up front, with the same parameters. */
export function createPasswordHasher(params: PasswordHashParams = DEFAULT_HASH_PARAMS): PasswordHasher {
  const options: Options = { algorithm: ARGON2ID, memoryCost: params.memoryCost, timeCost: params.timeCost, parallelism: 1 };
  // Started now (on the libuv pool), so the first unknown-account login is not slower than the rest.
  const dummy = hash(randomBytes(32), options);
  dummy.catch(() => {});
  const hasher: PasswordHasher = {
    hash: (password) => hash(password, options),
    async verify(passwordHash, password) {
      try {
        return await verify(passwordHash, password);
      } catch {
        return false; // a malformed stored hash verifies nothing
      }
    },
    async burn(password) {
      await hasher.verify(await dummy, password);
    },
  };
  return hasher;
}
