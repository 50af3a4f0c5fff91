import type { Entry } from '../command.ts';
import { environmentsGroup } from './environments.ts';
import { keysGroup } from './keys.ts';
import { secretsGroup } from './secrets.ts';
import { serverCommand } from './server.ts';
import { migrateCommand } from './migrate.ts';
import { systemCommands } from './system.ts';
import { tenantsGroup } from './tenants.ts';
import { generateRootGroup, rootTokensGroup } from './generate-root.ts';
import { machinesGroup } from './machines.ts';
import { tokenGroup } from './token.ts';
import { grantsGroup } from './grants.ts';
import { policyGroup } from './policy.ts';
import { auditGroup } from './audit.ts';
import { authCommands, totpGroup } from './auth.ts';
import { usersGroup } from './users.ts';
import { automationsGroup, runsGroup } from './automations.ts';
import { breakGlassCommand, requestsGroup } from './requests.ts';
import { accessPolicyGroup, reviewsGroup } from './escrow-admin.ts';
import { connectorsGroup } from './connectors.ts';
import { rotateCommand, rotationGroup } from './rotation.ts';

/** Every top-level command and verb group, in the order help lists them. */
export const entries: Entry[] = [...systemCommands, serverCommand, migrateCommand, secretsGroup, keysGroup, tenantsGroup, generateRootGroup, rootTokensGroup, environmentsGroup, machinesGroup, tokenGroup, grantsGroup, policyGroup, auditGroup, ...authCommands, totpGroup, usersGroup, requestsGroup, breakGlassCommand, reviewsGroup, accessPolicyGroup, automationsGroup, runsGroup, connectorsGroup, rotateCommand, rotationGroup];
