import { positionals, required, UsageError } from '../args.ts';
import { route } from '../client.ts';
import type { Command, Group } from '../command.ts';
import { readSecretInput } from '../input.ts';

/** The `token` group: a machine gets an access token, an admin revokes one. */

interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
}

const exchange: Command = {
  name: 'exchange',
  summary: 'Exchange a machine identity\'s client secret (or an OIDC JWT) for an access token',
  usage: 'token exchange --client-id ID [--jwt]',
  help: [
    'Reads the client secret from stdin (or a hidden prompt on a terminal), NEVER from an argument.',
    '--jwt   stdin holds a JWT from the identity provider the identity trusts, not a client secret',
    'Prints just the access token, e.g.: export KEYHOLD_TOKEN=$(keyhold token exchange --client-id khc_... < secret-file)',
    'With --json: {"access_token", "token_type", "expires_in"}.',
  ],
  options: { 'client-id': { type: 'string' }, jwt: { type: 'boolean' } },
  async run({ args, flags, api, out, deps }) {
    if (args.length > 0) {
      throw new UsageError('the secret is not taken as an argument (it would be kept in shell history)', 'pipe it on stdin or type it at the prompt');
    }
    const clientId = required(flags, 'client-id', 'khc_...');
    const jwt = flags.jwt === true;
    const credential = (await readSecretInput(deps.stdin, deps.stderr, jwt ? 'JWT (input hidden): ' : 'Client secret (input hidden): ')).trim();
    if (credential === '') throw new UsageError(`no ${jwt ? 'JWT' : 'client secret'} on stdin`);
    const body = jwt
      ? { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', client_id: clientId, assertion: credential }
      : { grant_type: 'client_credentials', client_id: clientId, client_secret: credential };
    const res = await api.call<TokenResponse>('POST', '/v1/auth/token', { body });
    if (!out.json) out.note(`Token valid for ${res.expires_in}s.`);
    out.result(res, () => res.access_token);
  },
};

const revoke: Command = {
  name: 'revoke',
  summary: 'Revoke one access token of the tenant by id (see: keyhold machines tokens ID)',
  usage: 'token revoke TOKEN_ID',
  options: {},
  async run({ args, api, out }) {
    const [id] = positionals(args, ['TOKEN_ID'], revoke.usage) as [string];
    await api.call<null>('DELETE', route`/v1/auth/tokens/${id}`);
    out.result({ revoked: id }, () => `Revoked token ${id}.`);
  },
};

export const tokenGroup: Group = {
  name: 'token',
  summary: 'Access tokens of machine identities: exchange, revoke',
  commands: [exchange, revoke],
};
