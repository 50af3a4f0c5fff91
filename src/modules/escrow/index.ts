import { createAccessPolicyService } from './access-policy-service.ts';
import { createBreakGlassService } from './break-glass-service.ts';
import { createDecisionService } from './decision-service.ts';
import { createRequestService, type EscrowDeps } from './request-service.ts';

export { escrowRoutes } from './routes.ts';
export { approverGroupMembers } from './access-policy-service.ts';

/**
 * Escrow wired from its parts: `accessPolicies` (versioned approval rules and groups), `requests`
 * (file, list, show, cancel, revoke), `decisions` (approve, deny) and `breakGlass` (take access
 * now, reviews after). The authorizer reads the rules and live grants itself (escrow-authz.ts).
 */
export function createEscrowModule(deps: EscrowDeps) {
  const accessPolicies = createAccessPolicyService(deps);
  const requests = createRequestService(deps);
  const decisions = createDecisionService({ ...deps, requests });
  const breakGlass = createBreakGlassService({ ...deps, requests });
  return { accessPolicies, requests, decisions, breakGlass };
}

export type EscrowModule = ReturnType<typeof createEscrowModule>;
