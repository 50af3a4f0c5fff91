import type { Executor } from '../../storage/database.ts';
import { isUniqueViolation } from '../../storage/db-errors.ts';

export interface SealConfig {
  type: 'shamir' | 'dev';
  shares: number;
  threshold: number;
  /** base64 key check value (an AES-GCM blob only the root key opens). */
  check: string;
  /**
   * Shamir mode: each share's digest (shamir/index.ts `shareDigest`), so a share is checked as it
   * is given. Absent on servers initialised before: there only the reconstructed key is checked.
   */
  shareDigests?: string[];
}

export interface SystemMetaRepository {
  getSealConfig(): Promise<SealConfig | null>;
  /** Stores the seal config once; false if another process initialised first. */
  claimSealConfig(config: SealConfig): Promise<boolean>;
}

export function createSystemMetaRepository(db: Executor): SystemMetaRepository {
  return {
    async getSealConfig() {
      const row = await db.selectFrom('system_meta').select('value').where('key', '=', 'seal').executeTakeFirst();
      return row ? (JSON.parse(row.value) as SealConfig) : null;
    },
    async claimSealConfig(config) {
      try {
        await db.insertInto('system_meta').values({ key: 'seal', value: JSON.stringify(config) }).execute();
        return true;
      } catch (err) {
        if (isUniqueViolation(err)) return false;
        throw err;
      }
    },
  };
}
