import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TokenService } from '../auth/token-service.ts';
import type { TenantService } from '../tenants/tenant-service.ts';
import type { SealManager } from './seal-manager.ts';

export const DEV_ROOT_TOKEN_FILE = 'dev-root-token';

/**
 * Initialisation: root key (shown as shares once), the default tenant with its KEK, and the root
 * token (shown once). Shamir mode ends sealed; dev mode stays unsealed and keeps its key and root
 * token in the data directory.
 */
export function createSystemService(deps: { seal: SealManager; tenants: TenantService; tokens: TokenService; dataDir: string }) {
  const { seal, tenants, tokens, dataDir } = deps;
  return {
    status: () => seal.status(),

    async initialize(opts: { type: 'shamir' | 'dev'; shares: number; threshold: number }) {
      const { shares } = await seal.initialize(opts);
      await tenants.create('default');
      const root = await tokens.issue({ tenantId: null, kind: 'root', name: 'root' });
      if (opts.type === 'dev') {
        await writeFile(join(dataDir, DEV_ROOT_TOKEN_FILE), root.token + '\n', { mode: 0o600 });
      } else {
        seal.seal();
      }
      return { shares, threshold: opts.threshold, rootToken: root.token };
    },

    unseal: (share: string) => seal.submitShare(share),
    seal: () => seal.seal(),
  };
}

export type SystemService = ReturnType<typeof createSystemService>;
