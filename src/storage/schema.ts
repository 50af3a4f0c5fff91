import type { Generated } from 'kysely';
/**
 * The one schema, as Kysely sees it. Times are epoch milliseconds (bigint columns, read back as
 * numbers on both dialects); booleans are not used (SQLite has none); JSON is text.
 */
export interface Database {
  system_meta: SystemMetaTable;
  tenants: TenantsTable;
  tenant_keks: TenantKeksTable;
  environments: EnvironmentsTable;
  secrets: SecretsTable;
  secret_states: SecretStatesTable;
  secret_versions: SecretVersionsTable;
  tokens: TokensTable;
  users: UsersTable;
  sessions: SessionsTable;
  machine_identities: MachineIdentitiesTable;
  grants: GrantsTable;
  tenant_policies: TenantPoliciesTable;
  audit_events: AuditEventsTable;
  audit_head: AuditHeadTable;
  audit_usage: AuditUsageTable;
  audit_usage_head: AuditUsageHeadTable;
  automation_fires: AutomationFiresTable;
  audit_cursors: AuditCursorsTable;
  audit_checkpoints: AuditCheckpointsTable;
  audit_keyed_from: AuditKeyedFromTable;
  automations: AutomationsTable;
  automation_runs: AutomationRunsTable;
  access_policies: AccessPoliciesTable;
  access_requests: AccessRequestsTable;
  access_approvals: AccessApprovalsTable;
  access_grants: AccessGrantsTable;
  access_reviews: AccessReviewsTable;
  connectors: ConnectorsTable;
  connector_slots: ConnectorSlotsTable;
  rotation_policies: RotationPoliciesTable;
  rotations: RotationsTable;
  leases: LeasesTable;
  root_generation_attempts: RootGenerationAttemptsTable;
}

export interface AuditCheckpointsTable {
  seq: number;
  hash: string;
  time: number;
  /** Ed25519 signature (base64) over checkpointMessage(seq, hash, time, prev_seq). */
  signature: string;
  /** The signing public key (SPKI DER, base64); verifiers compare it with the key they trust. */
  public_key: string;
  /** The checkpoint before this one (0 for the first); null on checkpoints signed before links existed. */
  prev_seq: number | null;
}

export interface AuditEventsTable {
  seq: number;
  id: string;
  time: number;
  tenant_id: string | null;
  actor_type: string;
  actor_id: string;
  action: string;
  resource_type: string;
  resource_id: string | null;
  resource_name: string | null;
  environment: string | null;
  secret_version: number | null;
  outcome: string;
  reason: string | null;
  /** JSON object of strings. */
  context: string;
  prev_hash: string;
  hash: string;
  /** HMAC of `hash` under the root-derived event key (audit/event-mac.ts); null for events recorded while sealed, and before migration 019. */
  mac: string | null;
}

/** One row: events after `seq` must carry a MAC (migration 019). */
export interface AuditKeyedFromTable {
  id: number;
  seq: number;
}

export interface AuditHeadTable {
  id: number;
  seq: number;
  hash: string;
}

/** Allowed uses and reveals of a secret by one actor, folded from audit_events (audit/usage-summary.ts). */
export interface AuditUsageTable {
  tenant_id: string;
  resource_name: string;
  actor_type: string;
  actor_id: string;
  action: string;
  first_time: number;
  last_time: number;
  count: number;
}

export interface AuditUsageHeadTable {
  id: number;
  /** Every event up to this seq is folded into audit_usage. */
  seq: number;
}

/** A scheduled fire of an automation, claimed by the node that starts its run (automations/scheduler.ts). */
export interface AutomationFiresTable {
  tenant_id: string;
  automation: string;
  /** The instant the schedule named (epoch ms), not when a node got to it. */
  fire_at: number;
  node: string;
  claimed_at: number;
}

export interface AuditCursorsTable {
  sink: string;
  seq: number;
}

export interface SystemMetaTable {
  key: string;
  value: string;
}

export interface TenantsTable {
  id: string;
  name: string;
  created_at: number;
  /** KEK version used for new wraps. */
  kek_version: number;
  /** Lowest KEK version still allowed to decrypt (raised after a rewrap). */
  kek_min_version: number;
  /** Tenant policy version in force (0 = built-in policies only). */
  policy_version: number;
  /** Bumped on every grant, identity or policy change; authorization caches key on it. */
  authz_generation: number;
}

export interface TenantKeksTable {
  tenant_id: string;
  version: number;
  /** KEK wrapped by the root key; null once retired (below the minimum decryption version). */
  wrapped_key: Uint8Array | null;
  created_at: number;
  retired_at: number | null;
}

export interface EnvironmentsTable {
  id: string;
  tenant_id: string;
  name: string;
  created_at: number;
}

export interface SecretsTable {
  id: string;
  tenant_id: string;
  name: string;
  label: string;
  owner: string;
  purpose: string;
  classification: string;
  tags: string;
  expires_at: number | null;
  created_at: number;
  created_by: string;
  updated_at: number;
  deleted_at: number | null;
  /** Bumped on every metadata change (optimistic concurrency for PATCH). */
  revision: number;
}

/** Label pointers for one secret in one environment: one version per label, by construction. */
export interface SecretStatesTable {
  secret_id: string;
  environment_id: string;
  tenant_id: string;
  current_version: number | null;
  pending_version: number | null;
  previous_version: number | null;
  latest_version: number;
  updated_at: number;
}

export interface SecretVersionsTable {
  id: string;
  tenant_id: string;
  secret_id: string;
  environment_id: string;
  version: number;
  /** AES-256-GCM blob of the value; null once destroyed. */
  ciphertext: Uint8Array | null;
  /** The version's DEK wrapped by the tenant KEK; null once destroyed (crypto-shredded). */
  wrapped_dek: Uint8Array | null;
  kek_version: number;
  created_at: number;
  created_by: string;
  reason: string;
  /** When this version stopped being current; the rollback window counts from here. */
  superseded_at: number | null;
  destroyed_at: number | null;
}

export interface TokensTable {
  id: string;
  /** Null for system (root) tokens, which may act in any tenant. */
  tenant_id: string | null;
  /** SHA-256 of the token; the token itself is shown once and never stored. */
  token_hash: string;
  name: string;
  kind: string;
  /** For machine tokens: the machine identity. */
  principal_id: string | null;
  /** Bound tokens (automation runs): the one environment, by name, they may act in; null for unbound. */
  environment: string | null;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

export interface UsersTable {
  id: string;
  tenant_id: string;
  username: string;
  password_hash: string;
  totp_secret: Uint8Array | null;
  totp_enabled: number;
  totp_last_step: number | null;
  /** A TOTP secret being enrolled (sealed like totp_secret); it replaces totp_secret only when confirmed. */
  totp_pending_secret: Uint8Array | null;
  /** SHA-256 of the outstanding enrolment ticket (base64url), which a first factor needs; null when none. */
  totp_ticket_hash: string | null;
  totp_ticket_expires_at: number | null;
  /** Moves on at every reset of the user's factor: a session's second factor counts only under the epoch it was verified in (migration 021). */
  factor_epoch: Generated<number>;
  created_at: number;
  password_changed_at: number;
  disabled_at: number | null;
  /** Where notifications reach them (bare address, migration 024); null: none given. Personal data: never audited or logged. */
  email: Generated<string | null>;
}

export interface SessionsTable {
  id: string;
  tenant_id: string;
  user_id: string;
  token_hash: string;
  created_at: number;
  last_seen_at: number;
  expires_at: number;
  mfa_at: number | null;
  /** The user's factor_epoch when mfa_at was verified; null with no second factor. */
  mfa_epoch: number | null;
  revoked_at: number | null;
}

export interface MachineIdentitiesTable {
  id: string;
  tenant_id: string;
  name: string;
  kind: string;
  client_id: string;
  client_secret_hash: string | null;
  oidc_issuer: string | null;
  oidc_jwks_url: string | null;
  oidc_audience: string | null;
  oidc_subject: string | null;
  oidc_claims: string | null;
  /** Null: saved before identities had a max age; the default applies. */
  oidc_max_age_ms: number | null;
  /** 'string' or 'glob'; null: saved before migration 028, bound values compared whole ('exact'). */
  oidc_bound_claims_type: string | null;
  token_ttl_ms: number;
  owner_user_id: string | null;
  created_at: number;
  disabled_at: number | null;
}

export interface GrantsTable {
  id: string;
  tenant_id: string;
  principal_type: string;
  principal_id: string;
  role: string;
  environments: string | null;
  name_patterns: string | null;
  expires_at: number | null;
  created_at: number;
  created_by: string;
  revoked_at: number | null;
}

export interface TenantPoliciesTable {
  tenant_id: string;
  version: number;
  text: string;
  comment: string;
  created_at: number;
  created_by: string;
}

export interface AutomationsTable {
  id: string;
  tenant_id: string;
  name: string;
  /** The definition as JSON: references only, never values. */
  definition: string;
  revision: number;
  /** SHA-256 of the webhook trigger token; the token is shown once. */
  webhook_token_hash: string | null;
  created_at: number;
  created_by: string;
  updated_at: number;
}

export interface AutomationRunsTable {
  id: string;
  tenant_id: string;
  automation_id: string;
  automation_name: string;
  environment: string;
  trigger: string;
  status: string;
  revision: number;
  actor_type: string;
  actor_id: string;
  started_at: number;
  finished_at: number | null;
  /** Step records as JSON, redacted before they are stored. */
  steps: string;
  /** The steps without outputs and logs (JSON), written with `steps`; null on runs stored before migration 025. */
  step_summary: string | null;
  error: string | null;
}


/** Escrow: one version of a tenant's access policy document (groups + approval rules, JSON). */
export interface AccessPoliciesTable {
  tenant_id: string;
  version: number;
  document: string;
  comment: string;
  created_at: number;
  created_by: string;
}

export interface AccessRequestsTable {
  id: string;
  tenant_id: string;
  requester_type: string;
  requester_id: string;
  requester_owner_id: string | null;
  action: string;
  environment: string;
  /** JSON array of { id, name }. */
  secrets: string;
  justification: string;
  duration_ms: number;
  state: string;
  /** JSON snapshot of the rule the request was filed under. */
  rule: string;
  policy_version: number;
  break_glass: number;
  created_at: number;
  expires_at: number;
  decided_at: number | null;
  decided_by: string | null;
  revision: number;
}

export interface AccessApprovalsTable {
  request_id: string;
  tenant_id: string;
  approver_id: string;
  decision: string;
  step: number;
  comment: string;
  duration_ms: number | null;
  created_at: number;
  /** The address the decision was given from (null: recorded before migration 023). */
  source_ip: string | null;
}

export interface AccessGrantsTable {
  id: string;
  tenant_id: string;
  request_id: string;
  principal_type: string;
  principal_id: string;
  secret_id: string;
  secret_name: string;
  environment: string;
  action: string;
  /** JSON array of approver user ids. */
  approvers: string;
  created_at: number;
  expires_at: number;
  revoked_at: number | null;
  revoked_by: string | null;
  expired_at: number | null;
}

export interface AccessReviewsTable {
  id: string;
  tenant_id: string;
  request_id: string;
  opened_at: number;
  reviewed_at: number | null;
  reviewed_by: string | null;
  outcome: string | null;
  comment: string | null;
}

export interface ConnectorsTable {
  id: string;
  tenant_id: string;
  environment_id: string;
  name: string;
  type: string;
  /** JSON object of non-secret settings. */
  settings: string;
  /** JSON object: slot → secret name. */
  slots: string;
  owner: string;
  created_at: number;
  created_by: string;
  updated_at: number;
  /** Bumped on every change (check-and-set for updates). */
  revision: number;
}

/** One row per connector slot, so dependents of a secret are an indexed lookup. */
export interface ConnectorSlotsTable {
  connector_id: string;
  tenant_id: string;
  slot: string;
  secret_name: string;
}

export interface RotationPoliciesTable {
  id: string;
  tenant_id: string;
  secret_id: string;
  secret_name: string;
  environment_id: string;
  environment: string;
  rotator: string;
  /** Rotator settings as JSON: never a value (credentials are referenced by secret name). */
  settings: string;
  schedule_kind: string;
  schedule: string;
  catch_up: string;
  /** Recipients as JSON. */
  notify: string;
  rollback_window_ms: number;
  expiry_lead_ms: number | null;
  rotator_state: string;
  next_run_at: number | null;
  due_trigger: string | null;
  last_run_at: number | null;
  last_result: string | null;
  last_error: string | null;
  failures: number;
  revision: number;
  created_at: number;
  created_by: string;
  updated_at: number;
  /** The actor who last set the policy (null: set before this was recorded). */
  updated_by: string | null;
  /** When a failed (or claimed and still unstarted) scheduler-driven run is tried again; null: none pending. */
  retry_at: number | null;
  /** The trigger that run had (schedule, expiry, policy-change). */
  retry_trigger: string | null;
  /** Scheduler-driven attempts in a row that failed since the last success. */
  retry_attempts: number;
  /** When the retries ran out (the policy needs a person); null after a success or a change of rotator or settings. */
  gave_up_at: number | null;
  last_succeeded_at: number | null;
  /** The expiry due point (expires_at - lead) a scheduler claimed: one expiry run per due point. */
  expiry_claimed_for: number | null;
}

export interface RotationsTable {
  id: string;
  tenant_id: string;
  secret_id: string;
  secret_name: string;
  environment_id: string;
  environment: string;
  rotator: string;
  trigger: string;
  rehearsal: number;
  state: string;
  step: string;
  attempt: number;
  /** Non-null while live: unique, so one rotation per secret and environment at a time. */
  active_key: string | null;
  lease_owner: string | null;
  lease_until: number | null;
  heartbeat_at: number | null;
  from_version: number | null;
  pending_version: number | null;
  to_version: number | null;
  rotator_state: string;
  error_code: string | null;
  error_step: string | null;
  error_detail: string | null;
  /** JSON array of { connector, slot, detail }. */
  failed_connectors: string;
  /** JSON array of every dependent's check result (no values). */
  checks: string;
  actor_type: string;
  actor_id: string;
  started_at: number;
  updated_at: number;
  finished_at: number | null;
  reminded_at: number | null;
}

export interface LeasesTable {
  name: string;
  owner: string;
  until: number;
}

/** A generate-root attempt whose start is in the audit log and whose end is not yet (migration 029). */
export interface RootGenerationAttemptsTable {
  nonce: string;
  started_at: number;
}
