import { positionals, required, UsageError } from '../args.ts';
import { route } from '../client.ts';
import type { Command, Group } from '../command.ts';
import { readSecretInput } from '../input.ts';
import { fields, table, time } from '../output.ts';
import { decodeRootToken } from '../../crypto/root/otp.ts';
import { isKeyholdError } from '../../errors/index.ts';

/**
 * The `generate-root` group: a new root token from a threshold of unseal shares (when the root
 * token was revoked, lost or leaked), and the `root-tokens` group to see and revoke root tokens.
 */

interface Progress { started: boolean; nonce: string | null; progress: number; threshold: number; expiresAt?: string | null }

const start: Command = {
  name: 'start',
  summary: 'Start generating a new root token: prints the nonce for the share holders and a one-time key, ONCE',
  usage: 'generate-root start',
  help: [
    'Give the share holders the nonce (they check it before giving a share); keep the one-time key to yourself:',
    'only it opens the new token, so whoever gives the last share cannot use what they get. The attempt lives',
    'on this server node for an hour, until cancelled, or until the server is sealed.',
  ],
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], start.usage);
    const res = await api.call<{ nonce: string; otp: string; threshold: number; expiresAt: string }>('POST', '/v1/sys/generate-root');
    out.result(res, () => fields([
      ['Nonce', res.nonce],
      ['One-time key', res.otp],
      ['Shares needed', String(res.threshold)],
      ['Expires', time(res.expiresAt)],
      ['Next', `each holder runs 'keyhold generate-root share --nonce ${res.nonce}'; then 'keyhold generate-root decode ENCODED' with this key on stdin`],
    ]));
  },
};

const status: Command = {
  name: 'status',
  summary: 'The generation in progress, if any: its nonce and how many shares it has',
  usage: 'generate-root status',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], status.usage);
    const res = await api.call<Progress>('GET', '/v1/sys/generate-root');
    out.result(res, () => (res.started
      ? fields([['Nonce', res.nonce], ['Progress', `${res.progress}/${res.threshold}`], ['Expires', time(res.expiresAt)]])
      : 'No root token generation in progress.'));
  },
};

const share: Command = {
  name: 'share',
  summary: 'Give one unseal share (stdin, or a hidden prompt) towards the generation named by --nonce',
  usage: 'generate-root share --nonce NONCE',
  help: ['The completing share prints the new token ENCODED: only the one-time key of whoever started opens it.'],
  options: { nonce: { type: 'string' } },
  async run({ args, flags, api, out, deps }) {
    if (args.length > 0) throw new UsageError('the share is not taken as an argument (it would be kept in shell history)', 'pipe it on stdin or type it at the prompt');
    const nonce = required(flags, 'nonce', 'the nonce printed by generate-root start');
    const text = (await readSecretInput(deps.stdin, deps.stderr, 'Unseal share (input hidden): ')).trim();
    if (text === '') throw new UsageError('no share given on stdin');
    const res = await api.call<Progress & { complete: boolean; encodedToken?: string }>('POST', '/v1/sys/generate-root/share', { body: { nonce, share: text } });
    out.result(res, () => (res.complete
      ? `Complete. Encoded root token (give it to whoever started; their one-time key opens it):\n${res.encodedToken}`
      : `Share accepted: ${res.progress}/${res.threshold}.`));
  },
};

const cancel: Command = {
  name: 'cancel',
  summary: 'Cancel the generation in progress; the shares given to it are forgotten',
  usage: 'generate-root cancel',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], cancel.usage);
    await api.call<null>('DELETE', '/v1/sys/generate-root');
    out.result({ cancelled: true }, () => 'Cancelled.');
  },
};

const decode: Command = {
  name: 'decode',
  summary: 'Open an encoded root token with the one-time key (read from stdin, or a hidden prompt)',
  usage: 'generate-root decode ENCODED',
  help: ['Runs locally: nothing is sent to the server. Prints the root token.'],
  options: {},
  async run({ args, out, deps }) {
    const [encoded] = positionals(args, ['ENCODED'], decode.usage) as [string];
    const otp = (await readSecretInput(deps.stdin, deps.stderr, 'One-time key (input hidden): ')).trim();
    if (otp === '') throw new UsageError('no one-time key given on stdin');
    let token: string;
    try {
      token = decodeRootToken(otp, encoded);
    } catch (err) {
      if (isKeyholdError(err)) throw new UsageError(`${err.code}: ${err.message}`, 'use the one-time key printed by the generate-root start of this attempt');
      throw err;
    }
    out.result({ rootToken: token }, () => token);
  },
};

export const generateRootGroup: Group = {
  name: 'generate-root',
  summary: 'A new root token from a threshold of unseal shares (no token needed)',
  commands: [start, status, share, cancel, decode],
};

interface RootToken { id: string; createdAt: string; revokedAt: string | null; current: boolean }

const list: Command = {
  name: 'list',
  summary: 'List root tokens, live and revoked (ids, never tokens)',
  usage: 'root-tokens list',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], list.usage);
    const res = await api.call<{ items: RootToken[] }>('GET', '/v1/sys/root-tokens');
    out.result(res, () => table(['ID', 'CREATED', 'REVOKED', ''], res.items.map((t) => [t.id, time(t.createdAt), time(t.revokedAt) ?? '-', t.current ? '(this token)' : ''])));
  },
};

const revoke: Command = {
  name: 'revoke',
  summary: 'Revoke a root token by id, for good (your own too: keep another live one)',
  usage: 'root-tokens revoke TOKEN_ID',
  options: {},
  async run({ args, api, out }) {
    const [id] = positionals(args, ['TOKEN_ID'], revoke.usage) as [string];
    await api.call<null>('DELETE', route`/v1/tokens/${id}`);
    out.result({ revoked: id }, () => `Revoked root token ${id}.`);
  },
};

export const rootTokensGroup: Group = {
  name: 'root-tokens',
  summary: 'Root tokens: list, revoke (root token)',
  commands: [list, revoke],
};
