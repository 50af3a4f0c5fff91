import type { StepRecord } from './types.ts';

/** The most of a step's error text a run record keeps (the list answers every step's error). */
export const MAX_STEP_ERROR_CHARS = 4096;

/** Cuts an (already redacted) error text to MAX_STEP_ERROR_CHARS, saying so. */
export function clipError(error: string): string {
  return error.length <= MAX_STEP_ERROR_CHARS ? error : `${error.slice(0, MAX_STEP_ERROR_CHARS)}… (error truncated)`;
}

/**
 * A run's stored steps share one budget of JSON bytes: a step whose record would take the run past
 * it keeps its status, timing and error, but its output and log are replaced by a marker saying why
 * (as a cut HTTP body is marked `truncated: true`). Returns the record to store and the bytes now used.
 */
export function withinBudget(record: StepRecord, usedBytes: number, budgetBytes: number): { record: StepRecord; usedBytes: number } {
  const size = Buffer.byteLength(JSON.stringify(record));
  if (usedBytes + size <= budgetBytes) return { record, usedBytes: usedBytes + size };
  const reason = `RUN_RECORD_LIMIT: the run's stored steps reached ${budgetBytes} bytes; this step's output and log were not kept`;
  const kept: StepRecord = { ...record, output: { truncated: true, reason }, log: `(${reason})` };
  return { record: kept, usedBytes: usedBytes + Buffer.byteLength(JSON.stringify(kept)) };
}
