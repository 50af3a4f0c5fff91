import { KeyholdError } from '../../../errors/index.ts';
import type { AuditInput, AuditLog } from '../../audit/audit-log.ts';

/**
 * Runs a user's action; a refusal whose code is in `codes` (one the user's attempt caused, SPEC §7:
 * every deny is an event) is recorded as the event `denied(code)` returns before it is rethrown.
 * Other errors are not the user's attempt and pass through unrecorded. The event is group-committed
 * outside any transaction: by then the refused action's own transaction has rolled back.
 */
export async function recordingRefusals<T>(
  audit: Pick<AuditLog, 'record'>, codes: ReadonlySet<string>, denied: (code: string) => AuditInput[], run: () => Promise<T>,
): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof KeyholdError && codes.has(err.code)) await audit.record(denied(err.code));
    throw err;
  }
}
