import type { Kysely } from 'kysely';
import type { Keyring } from '../../crypto/keyring.ts';
import { isKeyholdError } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import type { Database } from '../../storage/schema.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import { SYSTEM_ACTOR } from '../shared/context.ts';

export interface SelfTestReport {
  at: string;
  ok: boolean;
  tenants: number;
  /** KEK versions tested (every tenant's minimum decryption version to its current one). */
  keys: number;
  failures: Array<{ tenantId: string; version: number; reason: string }>;
}

/** Failures named in the run's audit event; the report itself lists them all. */
const MAX_FAILURES_IN_EVENT = 20;

/**
 * The periodic key self-test (SPEC §2): every usable KEK of every tenant, unwrapped afresh from the
 * store, seals a canary that the key in memory must open (keyring.selfTest). Each run is one audit
 * event, `system.self-test`, failed with the first failure's code when any version fails; the last
 * report is kept for `GET /v1/sys/self-test`. Runs do not overlap: a call during one joins it.
 */
export function createKeySelfTest(deps: {
  db: Kysely<Database>; keyring: Pick<Keyring, 'selfTest'>; audit: Pick<AuditLog, 'record'>; clock: Clock;
}) {
  const { db, keyring, audit, clock } = deps;
  let last: SelfTestReport | null = null;
  let running: Promise<SelfTestReport> | null = null;

  async function runOnce(): Promise<SelfTestReport> {
    const tenants = await db.selectFrom('tenants').select('id').orderBy('id').execute();
    const failures: SelfTestReport['failures'] = [];
    let keys = 0;
    let tested = 0;
    for (const { id } of tenants) {
      let checks;
      try {
        checks = await keyring.selfTest(id);
      } catch (err) {
        if (isKeyholdError(err) && err.code === 'TENANT_NOT_FOUND') continue; // removed since the list was read
        throw err; // SEALED, or the store itself failing: no report rather than a wrong one
      }
      tested++;
      keys += checks.length;
      for (const c of checks) if (!c.ok) failures.push({ tenantId: id, version: c.version, reason: c.reason ?? 'INTERNAL' });
    }
    const report: SelfTestReport = { at: new Date(clock.now()).toISOString(), ok: failures.length === 0, tenants: tested, keys, failures };
    last = report;
    const named = failures.slice(0, MAX_FAILURES_IN_EVENT).map((f) => `${f.tenantId}:${f.version}:${f.reason}`).join(',');
    await audit.record([{
      tenantId: null, actor: { type: SYSTEM_ACTOR.type, id: SYSTEM_ACTOR.id }, action: 'system.self-test',
      resource: { type: 'system', id: null, name: null },
      ...(report.ok ? { outcome: 'allowed' as const } : { outcome: 'failed' as const, reason: failures[0]!.reason }),
      context: { tenants: String(tested), keys: String(keys), failed: String(failures.length), ...(named ? { failures: named } : {}) },
    }]);
    return report;
  }

  return {
    /** Tests every tenant's usable KEKs now (SEALED while sealed). */
    run(): Promise<SelfTestReport> {
      running ??= runOnce().finally(() => {
        running = null;
      });
      return running;
    },
    /** The last completed run's report, or null before the first. */
    last(): SelfTestReport | null {
      return last;
    },
  };
}

export type KeySelfTest = ReturnType<typeof createKeySelfTest>;
