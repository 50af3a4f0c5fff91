import type { EscrowAction, ResolvedRule } from './access-policy.ts';

/**
 * A request's own life: pending → approved / denied / expired / cancelled, or superseded when a new
 * access policy changes the rule it waits under.
 */
export type RequestState = 'pending' | 'approved' | 'denied' | 'expired' | 'cancelled' | 'superseded';
/** What an approved request became: its grant, live until it expires or is revoked. */
export type GrantState = 'none' | 'active' | 'expired' | 'revoked';

/** Justifications are required and bounded: enough to say why, short enough to read in a queue. */
export const MIN_JUSTIFICATION = 10;
export const MAX_JUSTIFICATION = 1000;
export const MAX_COMMENT = 1000;
export const MAX_SECRETS_PER_REQUEST = 20;

export interface Approval {
  approverId: string;
  decision: 'approve' | 'deny';
  /** Whether it counts towards the quorum now (an approval whose approver may no longer approve does not). */
  counts: boolean;
  /** 1-based step this decision counted towards. */
  step: number;
  comment: string;
  durationSeconds: number | null;
  createdAt: string;
}

export interface AccessRequest {
  id: string;
  requester: { type: 'user' | 'machine'; id: string; ownerId: string | null };
  action: EscrowAction;
  environment: string;
  secrets: Array<{ id: string; name: string }>;
  justification: string;
  /** Lifetime of the grant once approved (approvers may have shortened it). */
  durationSeconds: number;
  state: RequestState;
  breakGlass: boolean;
  rule: { id: string; policyVersion: number; steps: Array<{ groups: string[]; approvals: number }> };
  /** 1-based step a pending request waits for; null once decided. */
  waitingForStep: number | null;
  approvals: Approval[];
  grant: { state: GrantState; expiresAt: string | null; revokedAt: string | null };
  review: { id: string; state: 'open' | 'done'; outcome: string | null } | null;
  createdAt: string;
  expiresAt: string;
  decidedAt: string | null;
  decidedBy: string | null;
}

export interface FileRequestInput {
  secrets: string[];
  environment: string;
  action: string;
  justification: string;
  durationSeconds?: number;
}

export interface BreakGlassReview {
  id: string;
  requestId: string;
  takenBy: string;
  secrets: string[];
  environment: string;
  action: string;
  justification: string;
  openedAt: string;
  state: 'open' | 'done';
  reviewedAt: string | null;
  reviewedBy: string | null;
  outcome: string | null;
  comment: string | null;
}

export type { ResolvedRule };
