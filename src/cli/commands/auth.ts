import { positionals, required, str, UsageError } from '../args.ts';
import { readText } from '../files.ts';
import type { CliDeps, Command, Group } from '../command.ts';
import { decodeUtf8, readAll, readHiddenLine } from '../input.ts';
import { fields, time } from '../output.ts';

/** Signing in and the signed-in user's own session: login, logout, whoami, step-up, password, and the `totp` group. */

interface LoginResult {
  token: string; sessionId: string; userId: string; username: string; tenant: string; mfaAt: string | null; expiresAt: string;
}
interface WhoAmI { type: string; id: string; name: string; tenant: string; mfaAt: string | null; expiresAt: string | null }

/**
 * Secret lines a command needs, never from arguments: prompted one by one without echo on a
 * terminal, otherwise the lines of stdin in order (a missing optional line is empty).
 */
export async function readLines(deps: Pick<CliDeps, 'stdin' | 'stderr'>, prompts: string[]): Promise<string[]> {
  if (deps.stdin.isTTY) {
    const answers: string[] = [];
    for (const prompt of prompts) answers.push(await readHiddenLine(deps.stdin, deps.stderr, prompt));
    return answers;
  }
  const lines = decodeUtf8(await readAll(deps.stdin), 'stdin').split(/\r?\n/);
  return prompts.map((_, i) => lines[i] ?? '');
}

function noSecretArguments(args: string[], what: string): void {
  if (args.length > 0) throw new UsageError(`the ${what} is not taken as an argument (it would be kept in shell history)`, 'pipe it on stdin or type it at the prompt');
}

async function readCode(deps: Pick<CliDeps, 'stdin' | 'stderr'>, args: string[]): Promise<string> {
  noSecretArguments(args, 'code');
  const [code] = await readLines(deps, ['One-time code: ']);
  if (code!.trim() === '') throw new UsageError('no one-time code given', 'pipe the 6-digit code from your authenticator app on stdin, or type it at the prompt');
  return code!.trim();
}

const login: Command = {
  name: 'login',
  summary: 'Sign in as a user; prints the session token (use it as KEYHOLD_TOKEN)',
  usage: 'login --username U [--tenant T]',
  help: [
    'The password is read from stdin (first line) or a hidden prompt, NEVER from an argument.',
    'Once TOTP is enrolled, the one-time code is the second line of stdin, or prompted (Enter if none).',
    'Prints only the token, so `export KEYHOLD_TOKEN=$(keyhold login --username ada)` works;',
    'with --json the server\'s answer (token, expiresAt, mfaAt, ...). The tenant defaults to "default".',
  ],
  options: { username: { type: 'string' } },
  async run({ args, flags, settings, api, out, deps }) {
    noSecretArguments(args, 'password');
    const username = required(flags, 'username', 'ada');
    const tenant = settings.tenant ?? 'default';
    const [password, code] = await readLines(deps, [`Password for ${username} (input hidden): `, 'One-time code (Enter if none): ']);
    if (password === '') throw new UsageError('no password given', 'pipe it on stdin (first line) or type it at the prompt');
    const totp = code!.trim();
    const res = await api.call<LoginResult>('POST', '/v1/auth/login', { body: { tenant, username, password, ...(totp ? { totp } : {}) } });
    if (!out.json) out.note(`Signed in as ${res.username} in ${res.tenant}; the session ends by ${time(res.expiresAt)}${res.mfaAt ? '' : ' (no second factor yet)'}.`);
    out.result(res, () => res.token);
  },
};

const logout: Command = {
  name: 'logout',
  summary: 'End the current session (KEYHOLD_TOKEN)',
  usage: 'logout',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], logout.usage);
    await api.call<null>('POST', '/v1/auth/logout');
    out.result({ loggedOut: true }, () => 'Signed out.');
  },
};

const whoami: Command = {
  name: 'whoami',
  summary: 'Show who the current token speaks for',
  usage: 'whoami',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], whoami.usage);
    const me = await api.call<WhoAmI>('GET', '/v1/auth/whoami');
    out.result(me, () => fields([
      ['Type', me.type], ['Name', me.name], ['ID', me.id], ['Tenant', me.tenant],
      ['Second factor', me.mfaAt ? `verified ${time(me.mfaAt)}` : null], ['Expires', time(me.expiresAt)],
    ]));
  },
};

const stepUp: Command = {
  name: 'step-up',
  summary: 'Verify a fresh one-time code for the step-up actions (reveal, approve, rotate, admin)',
  usage: 'step-up',
  help: ['The code is read from stdin or a prompt. Each code works once.'],
  options: {},
  async run({ args, api, out, deps }) {
    const code = await readCode(deps, args);
    const res = await api.call<{ mfaAt: string }>('POST', '/v1/auth/step-up', { body: { code } });
    out.result(res, () => `Second factor verified at ${time(res.mfaAt)}.`);
  },
};

const password: Command = {
  name: 'password',
  summary: 'Change your own password (ends your other sessions)',
  usage: 'password',
  help: ['Reads the current password, then the new one: two lines of stdin, or hidden prompts (the new one twice).'],
  options: {},
  async run({ args, api, out, deps }) {
    noSecretArguments(args, 'password');
    const tty = deps.stdin.isTTY === true;
    const [current, next, repeat] = await readLines(deps, ['Current password: ', 'New password: ', ...(tty ? ['New password again: '] : [])]);
    if (current === '' || next === '') throw new UsageError('give the current password and the new one', 'two lines on stdin, or at the prompts');
    if (tty && next !== repeat) throw new UsageError('the new passwords do not match');
    const res = await api.call<{ revokedSessions: number }>('POST', '/v1/auth/password', { body: { current, new: next } });
    out.result(res, () => `Password changed; ${res.revokedSessions} other session(s) ended.`);
  },
};

/**
 * The enrolment ticket a first factor needs: from --ticket-file, else the first line of stdin or a
 * hidden prompt; never an argument (shell history). Empty when none is given (replacing a factor).
 */
async function readTicket(deps: Pick<CliDeps, 'stdin' | 'stderr'>, file: string | undefined): Promise<string> {
  if (file !== undefined) {
    const ticket = (await readText(file, 'ticket file')).trim();
    if (ticket === '') throw new UsageError(`the ticket file ${file} is empty`);
    return ticket;
  }
  const [ticket] = await readLines(deps, ['Enrolment ticket from your admin (Enter if replacing a factor): ']);
  return ticket!.trim();
}

const enroll: Command = {
  name: 'enroll',
  summary: 'Start TOTP enrolment: shows the secret and otpauth URI once',
  usage: 'totp enroll [--ticket-file FILE]',
  help: [
    'A first factor needs the one-time ticket an admin issued (keyhold users totp-ticket): read from',
    '--ticket-file, else the first line of stdin or a hidden prompt, never an argument. Replacing an',
    'enrolled factor needs no ticket but a fresh step-up (keyhold step-up): give an empty line.',
    'Add the URI (or the secret) to an authenticator app, then run `keyhold totp confirm` with a code from it.',
  ],
  options: { 'ticket-file': { type: 'string' } },
  async run({ args, flags, api, out, deps }) {
    noSecretArguments(args, 'ticket');
    const ticket = await readTicket(deps, str(flags, 'ticket-file'));
    const res = await api.call<{ secret: string; uri: string }>('POST', '/v1/auth/totp/enroll', { body: ticket === '' ? {} : { ticket } });
    out.result(res, () => [
      'Add this to your authenticator app (shown ONCE):',
      '',
      `  URI:    ${res.uri}`,
      `  Secret: ${res.secret}`,
      '',
      "Then confirm with a code from the app: 'keyhold totp confirm'.",
    ].join('\n'));
  },
};

const confirm: Command = {
  name: 'confirm',
  summary: 'Confirm TOTP enrolment with a code from the app',
  usage: 'totp confirm',
  options: {},
  async run({ args, api, out, deps }) {
    const code = await readCode(deps, args);
    const res = await api.call<{ totpEnabled: boolean; mfaAt: string }>('POST', '/v1/auth/totp/confirm', { body: { code } });
    out.result(res, () => 'Second factor enrolled: from now on, login needs a code.');
  },
};

export const authCommands: Command[] = [login, logout, whoami, stepUp, password];

export const totpGroup: Group = {
  name: 'totp',
  summary: 'Your TOTP second factor',
  commands: [enroll, confirm],
};
