import { fail } from '../../errors/index.ts';
import { SECRET_NAME } from '../shared/names.ts';
import type { ConnectorTypeName } from './model.ts';
import { connectorTypes, isConnectorType } from './types/index.ts';
import type { ConnectorType } from './types/connector-type.ts';

/** Connector names: letters, digits, _ . -; start with a letter. */
export const CONNECTOR_NAME = /^[A-Za-z][A-Za-z0-9_.-]*$/;
const SLOT_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
/** A setting every HTTP-capable type accepts: secrets a proxied request may name in `{{ secrets.NAME }}` templates. */
export const TEMPLATE_SECRETS = 'templateSecrets';
const MAX_TEMPLATE_SECRETS = 32;

export function assertConnectorName(name: string, maxLength: number): void {
  if (name.length === 0 || name.length > maxLength || !CONNECTOR_NAME.test(name)) {
    fail('INVALID_NAME', `connector names start with a letter, use letters, digits, _ . - and are at most ${maxLength} characters`);
  }
}

export interface Definition {
  type: ConnectorTypeName;
  kind: ConnectorType<any>;
  /** Normalised settings as stored (templateSecrets included). */
  settings: Record<string, unknown>;
  slots: Record<string, string>;
  /** Every secret whose credential this connector decides the destination of: slot secrets and template secrets. */
  governed: string[];
}

/** Validates a type, its settings and its slots (names only: whether the secrets exist is the service's check). */
export function parseDefinition(typeName: string, rawSettings: Record<string, unknown>, slots: Record<string, string>, maxNameLength: number): Definition {
  if (!isConnectorType(typeName)) fail('VALIDATION_FAILED', `type must be one of ${Object.keys(connectorTypes).join(', ')}`);
  const kind = connectorTypes[typeName];
  const { [TEMPLATE_SECRETS]: rawTemplates, ...rest } = rawSettings;
  const settings = kind.parseSettings(rest) as Record<string, unknown>;
  let templates: string[] = [];
  if (rawTemplates !== undefined) {
    if (!kind.http) fail('VALIDATION_FAILED', `settings.${TEMPLATE_SECRETS} applies only to connectors that carry HTTP requests`);
    if (!Array.isArray(rawTemplates) || rawTemplates.length > MAX_TEMPLATE_SECRETS || !rawTemplates.every((n) => typeof n === 'string' && n.length <= maxNameLength && SECRET_NAME.test(n))) {
      fail('VALIDATION_FAILED', `settings.${TEMPLATE_SECRETS} must be a list of at most ${MAX_TEMPLATE_SECRETS} secret names`);
    }
    templates = [...new Set(rawTemplates as string[])].sort();
  }
  const { required, optional } = kind.slots(settings);
  for (const [slot, secret] of Object.entries(slots)) {
    if (!SLOT_NAME.test(slot) || (!required.includes(slot) && !optional.includes(slot))) {
      fail('SLOT_UNRESOLVED', `slot "${SLOT_NAME.test(slot) ? slot : '(unprintable)'}" is not a slot of this ${typeName} connector (slots: ${[...required, ...optional].join(', ')})`);
    }
    if (typeof secret !== 'string' || secret.length === 0 || secret.length > maxNameLength || !SECRET_NAME.test(secret)) {
      fail('SLOT_UNRESOLVED', `slot "${slot}" must name a secret (letters, digits, _ . -)`);
    }
  }
  for (const slot of required) if (slots[slot] === undefined) fail('SLOT_UNRESOLVED', `slot "${slot}" is required for this ${typeName} connector`);
  const sortedSlots = Object.fromEntries(Object.entries(slots).sort(([a], [b]) => a.localeCompare(b)));
  return {
    type: typeName, kind,
    settings: templates.length ? { ...settings, [TEMPLATE_SECRETS]: templates } : settings,
    slots: sortedSlots,
    governed: [...new Set([...Object.values(sortedSlots), ...templates])],
  };
}

/** The secrets a stored connector governs (slots and template secrets). */
export function governedBy(settings: Record<string, unknown>, slots: Record<string, string>): string[] {
  const templates = Array.isArray(settings[TEMPLATE_SECRETS]) ? (settings[TEMPLATE_SECRETS] as string[]) : [];
  return [...new Set([...Object.values(slots), ...templates])];
}
