import { isKeyholdError } from '../../errors/index.ts';
import type { ValueService } from '../secrets/value-service.ts';
import { createRedactor, redactDeep, unionRedactors, type Redactor } from './redactor.ts';

/**
 * The secret values this process knows, for redacting its own log lines: each tenant's snapshot (the
 * redactor TenantRedactors built, shared, not copied) plus values seen since in writes and reads.
 * Plaintext lives only here in memory; `clear` (on seal) drops it all.
 */
export interface KnownValues {
  /** Replaces a tenant's snapshot with the redactor built from all its live values. */
  setTenant(tenantId: string, redactor: Redactor, values: ReadonlySet<string>): void;
  /** Adds a value seen outside a snapshot (written or read through the value service); true if it was new. */
  add(value: string): boolean;
  /** Removes a value added by `add` (a write that was refused). */
  remove(value: string): void;
  /** Drops every value (seal). */
  clear(): void;
  /** A redactor over everything known right now. */
  redactor(): Redactor;
}

/** Bound on values seen outside snapshots; the oldest go first (they are in a snapshot once one is built). */
const DEFAULT_MAX_RECENT = 2_000;

/** Creates an empty registry. */
export function createKnownValues(opts: { maxRecent?: number } = {}): KnownValues {
  const maxRecent = opts.maxRecent ?? DEFAULT_MAX_RECENT;
  const snapshots = new Map<string, { redactor: Redactor; values: ReadonlySet<string> }>();
  const recent = new Set<string>();
  let cached: Redactor | null = null;

  const inSnapshot = (value: string) => {
    for (const s of snapshots.values()) if (s.values.has(value)) return true;
    return false;
  };

  return {
    setTenant(tenantId, redactor, values) {
      snapshots.set(tenantId, { redactor, values });
      for (const v of recent) if (values.has(v)) recent.delete(v);
      cached = null;
    },
    add(value) {
      if (typeof value !== 'string' || value.length === 0 || recent.has(value) || inSnapshot(value)) return false;
      recent.add(value);
      if (recent.size > maxRecent) recent.delete(recent.values().next().value!);
      cached = null;
      return true;
    },
    remove(value) {
      if (recent.delete(value)) cached = null;
    },
    clear() {
      snapshots.clear();
      recent.clear();
      cached = null;
    },
    redactor() {
      // Rebuilt only after a change; snapshots are reused as compiled, only the recent values compile here.
      cached ??= unionRedactors([...[...snapshots.values()].map((s) => s.redactor), createRedactor(recent)]);
      return cached;
    },
  };
}

/**
 * Wraps a value service so every value it writes or reads joins the registry. A write registers its
 * value before it runs, so anything logged meanwhile is covered; a write refused with a catalogued
 * error (whose message never holds the value) takes it out again, so refused writes cannot fill memory.
 * `onWritten` hears of each stored write (the tenant redactors drop their copy).
 */
export function trackKnownValues(service: ValueService, known: Pick<KnownValues, 'add' | 'remove'>, onWritten?: (tenantId: string) => void): ValueService {
  return {
    ...service,
    async write(ctx, name, environment, input) {
      const added = known.add(input.value);
      try {
        const written = await service.write(ctx, name, environment, input);
        onWritten?.(ctx.tenantId);
        return written;
      } catch (err) {
        if (added && isKeyholdError(err)) known.remove(input.value);
        throw err;
      }
    },
    read(ctx, name, environment, opts) {
      return service.read(ctx, name, environment, opts).then((result) => {
        known.add(result.value);
        return result;
      });
    },
  };
}

/**
 * A filter for each serialized log line (pino's streamWrite hook). The line is JSON: masking inside it
 * catches the JSON-escaped forms. If a mask ever breaks the JSON (a short value matched a bare token
 * outside a string), the line is parsed, redacted value by value and written again.
 */
export function logLineRedactor(known: Pick<KnownValues, 'redactor'>): (line: string) => string {
  // Fail closed, and never throw: an exception here would escape from whatever called the logger.
  const withheld = JSON.stringify({ level: 50, service: 'keyhold', msg: 'a log line was withheld: it could not be redacted' }) + '\n';
  return (line) => {
    try {
      const r = known.redactor();
      if (r.size === 0) return line;
      const out = r.redact(line);
      if (out === line) return line;
      try {
        JSON.parse(out);
        return out;
      } catch {
        return JSON.stringify(redactDeep(r, JSON.parse(line))) + '\n';
      }
    } catch {
      return withheld;
    }
  };
}
