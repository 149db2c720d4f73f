// A part is one kind of thing the agent puts on a host (policy routing, the
// netfilter rules, a sysctl). It observes what is there, reports each expected
// piece as present or missing, and says which steps install or remove it.
import type { AgentContext } from '../context.js';
import type { Step } from '../steps.js';

export interface PieceStatus {
  /** Stable across runs, for fleet tooling: "ip-rule/4", "iptables-jump/6", "nft-rule/egress-xds:…". */
  readonly id: string;
  readonly description: string;
  /** Present and as expected (not duplicated, nothing foreign mixed in). */
  readonly present: boolean;
  readonly detail?: string;
}

export interface PartState {
  readonly pieces: readonly PieceStatus[];
  /** Steps from what was observed to what the plan wants; none when all is present. */
  install(): Step[];
  /** Steps that remove everything of this part that was observed. */
  remove(): Step[];
}

export interface Part {
  readonly name: string;
  observe(context: AgentContext): Promise<PartState>;
  /** A host where none of it exists: what a dry-run install prints. */
  assumeAbsent(): PartState;
  /** A host where exactly the plan exists: what a dry-run uninstall prints. */
  assumePresent(): PartState;
}
