export const CLASSIFICATIONS = ['public', 'internal', 'confidential', 'restricted'] as const;
export type Classification = (typeof CLASSIFICATIONS)[number];

export const LABELS = ['current', 'pending', 'previous'] as const;
export type VersionLabel = (typeof LABELS)[number];

/** Inventory metadata of a secret. Never holds a value. */
export interface SecretMeta {
  id: string;
  name: string;
  label: string;
  owner: string;
  purpose: string;
  classification: Classification;
  tags: string[];
  expiresAt: string | null;
  createdAt: string;
  createdBy: string;
  updatedAt: string;
  deletedAt: string | null;
  revision: number;
}

export interface EnvironmentState {
  environment: string;
  currentVersion: number | null;
  pendingVersion: number | null;
  previousVersion: number | null;
  updatedAt: string;
}

export interface SecretDetail extends SecretMeta {
  environments: EnvironmentState[];
}

export interface CreateSecretInput {
  name: string;
  label?: string;
  owner: string;
  purpose?: string;
  classification?: Classification;
  tags?: string[];
  expiresAt?: string | null;
}

export type UpdateSecretInput = Partial<Omit<CreateSecretInput, 'name'>> & { revision?: number };

export interface VersionInfo {
  version: number;
  labels: VersionLabel[];
  createdAt: string;
  createdBy: string;
  reason: string;
  supersededAt: string | null;
  destroyedAt: string | null;
}

export interface RevealedValue {
  name: string;
  environment: string;
  version: number;
  value: string;
  createdAt: string;
}
