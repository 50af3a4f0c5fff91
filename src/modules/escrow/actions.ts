/**
 * The actions an access policy can put behind approval (SPEC §4): a person's reveal, rotation, writes,
 * and use by an identity. A module of its own: the CLI's offline policy tests need the list without
 * the access-policy schema (TypeBox's value module costs a third of a second to load).
 */
export const ESCROW_ACTIONS = ['reveal', 'rotate', 'write', 'use'] as const;
export type EscrowAction = (typeof ESCROW_ACTIONS)[number];
