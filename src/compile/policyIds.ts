// A policy's content → a small id, so memo keys over many policies stay short and cheap.
// Policies are immutable values, so identity finds a known one fast; an equal copy (a new
// object with the same content) gets the same id. Ids only grow, so a forgotten content
// gets a new id and can never alias an old memo entry.
import type { Policy } from '../policy/model.js';

const policyIds = new WeakMap<Policy, number>();
const idsByContent = new Map<string, number>();
let nextId = 1;

export function policyId(policy: Policy): number {
  let id = policyIds.get(policy);
  if (id === undefined) {
    const content = JSON.stringify(policy);
    id = idsByContent.get(content);
    if (id === undefined) {
      // Bounded: forgetting costs a rebuild, never a wrong answer.
      if (idsByContent.size >= 200_000) idsByContent.clear();
      idsByContent.set(content, (id = nextId++));
    }
    policyIds.set(policy, id);
  }
  return id;
}

/** A memo key for a list of policies (order matters). */
export const policiesKey = (policies: readonly Policy[]): string => policies.map(policyId).join(',');
