import type { Recipient } from '../notifications/notifier.ts';

/** Why a rotation started (SPEC §6, §9). */
export const TRIGGERS = ['schedule', 'expiry', 'manual', 'policy-change', 'compromised'] as const;
export type Trigger = (typeof TRIGGERS)[number];

/**
 * running → promoted → succeeded; running → awaiting_value (manual rotator) → running; any failure:
 * rolling_back → rolled_back; a rotation interrupted before it staged anything: abandoned.
 */
export type RotationState = 'running' | 'awaiting_value' | 'promoted' | 'succeeded' | 'rolling_back' | 'rolled_back' | 'abandoned';
/** The protocol's steps, in order; `rollback` while undoing. */
export type RotationStep = 'generate' | 'apply' | 'test' | 'verify' | 'promote' | 'finalize' | 'rollback' | 'done';
export const LIVE_STATES: RotationState[] = ['running', 'awaiting_value', 'promoted', 'rolling_back'];

export interface PolicyInput {
  rotator: string;
  settings?: Record<string, unknown>;
  /** One of: every `intervalMs`, or a cron expression (UTC); neither: only manual and event triggers. */
  intervalMs?: number;
  cron?: string;
  /** After downtime: `once` runs one missed rotation at once, `skip` waits for the next slot. */
  catchUp?: 'skip' | 'once';
  notify?: Recipient[];
  rollbackWindowMs?: number;
  /** Rotate this long before the secret's expiry date. */
  expiryLeadMs?: number | null;
  /** Check-and-set on the policy's revision. */
  revision?: number;
}

export interface RotationPolicy {
  secret: string;
  environment: string;
  rotator: string;
  settings: Record<string, unknown>;
  intervalMs: number | null;
  cron: string | null;
  catchUp: 'skip' | 'once';
  notify: Recipient[];
  rollbackWindowMs: number;
  expiryLeadMs: number | null;
  nextRunAt: string | null;
  lastRunAt: string | null;
  lastResult: string | null;
  lastError: string | null;
  failures: number;
  revision: number;
  updatedAt: string;
  /** Who last set the policy (whose `use` of the secrets its settings name it relies on); null if unknown. */
  updatedBy: string | null;
  /** Failed scheduler-driven attempts in a row and the next one (null: the last run did not fail, or none was retried). */
  retry: { trigger: string | null; failedAttempts: number; maxAttempts: number; nextAttemptAt: string | null; gaveUpAt: string | null } | null;
  /** Why the policy needs a person (retries exhausted, a stored schedule no longer allowed); empty when nothing does. */
  attention: string[];
}

export interface ConnectorCheck {
  connector: string;
  slots: string[];
  ok: boolean;
  latencyMs: number;
  detail: string;
}

export interface Rotation {
  id: string;
  secret: string;
  environment: string;
  rotator: string;
  trigger: string;
  rehearsal: boolean;
  state: RotationState;
  step: RotationStep;
  attempt: number;
  fromVersion: number | null;
  pendingVersion: number | null;
  toVersion: number | null;
  error: { code: string; step: string; detail: string } | null;
  failedConnectors: ConnectorCheck[];
  checks: ConnectorCheck[];
  startedAt: string;
  updatedAt: string;
  finishedAt: string | null;
}
