// Which policies apply to an Envoy node: `nodes` globs on the node id.
import type { PolicySpec } from './model.js';

// Every node is matched against every policy's globs on each update; compile each
// glob once. Bounded: globs come and go with policies over a server's lifetime.
const globCache = new Map<string, RegExp>();

export function globToRegExp(glob: string): RegExp {
  let re = globCache.get(glob);
  if (!re) {
    if (globCache.size >= 10_000) globCache.clear();
    const escaped = glob.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'));
    re = new RegExp(`^${escaped.join('.*')}$`);
    globCache.set(glob, re);
  }
  return re;
}

export function policySelectsNode(policy: PolicySpec, nodeId: string): boolean {
  return policy.nodes === undefined || policy.nodes.some((glob) => globToRegExp(glob).test(nodeId));
}
