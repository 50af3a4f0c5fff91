/**
 * Notifications (SPEC §9): owners and approvers hear about pending approvals, decisions, expiring
 * grants, break-glass and, later, rotations and findings. One interface; a folder per channel
 * (log now; webhook and SMTP with rotation). A notification never carries a secret value: it
 * names secrets, people and requests only.
 */

/** What happened. Channels may route or format by type (e.g. page on-call for `escrow.break-glass`). */
export type NotificationType =
  | 'escrow.request-filed'
  | 'escrow.request-approved'
  | 'escrow.request-denied'
  | 'escrow.request-cancelled'
  | 'escrow.request-superseded'
  | 'escrow.request-expired'
  | 'escrow.approval-recorded'
  | 'escrow.grant-revoked'
  | 'escrow.grant-expired'
  | 'escrow.break-glass'
  | 'escrow.review-done'
  | 'rotation.succeeded'
  | 'rotation.failed'
  | 'rotation.rolled-back'
  | 'rotation.gave-up'
  | 'rotation.manual-due'
  | 'rotation.manual-overdue';

/**
 * Who should hear it: an identity of the tenant, a named approver group, or an address. The SMTP channel mails
 * users, machines' owners and groups' members at their addresses in the notification's tenant (recipients.ts).
 */
export interface Recipient {
  kind: 'user' | 'machine' | 'group' | 'email';
  /** User or machine id, the group name, or an e-mail address (`email`: rotation notify lists). */
  id: string;
}

export interface Notification {
  type: NotificationType;
  tenantId: string;
  /** `alert` is for what someone must look at now (break-glass). */
  severity: 'info' | 'alert';
  recipients: Recipient[];
  /** One line, e.g. an e-mail subject. */
  subject: string;
  /** Plain text for people. Never a secret value, token or key. */
  body: string;
  /** What it is about, for links and de-duplication (e.g. { type: 'access-request', id }). */
  resource: { type: string; id: string };
}

/**
 * Delivers notifications. Called after the change it reports has committed; a channel that fails
 * must not undo or block that change, so implementations handle their own retries and errors.
 */
export interface Notifier {
  notify(notification: Notification): Promise<void>;
}
