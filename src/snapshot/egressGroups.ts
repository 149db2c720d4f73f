// The compiler the snapshot cache runs per node group: the egress compiler's
// Listeners, Clusters and route tables (RDS), as typed resources ready to encode.
import { compileEgress, type CompileOptions, type CompiledEgress } from '../compile/index.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import type { ProtoJson } from '../envoy/codec.js';
import type { CompiledGroup, GroupCompiler } from './cache.js';

export type CompiledEgressGroup = CompiledEgress & CompiledGroup;

export function egressGroupCompiler(options: CompileOptions = {}): GroupCompiler<CompiledEgressGroup> {
  return (policies) => {
    const compiled = compileEgress(policies, options);
    return {
      ...compiled,
      resources: [
        ...compiled.clusters.map((json) => ({ typeUrl: TypeUrl.Cluster, name: json.name, json: json as unknown as ProtoJson })),
        ...compiled.listeners.map((json) => ({ typeUrl: TypeUrl.Listener, name: json.name, json: json as unknown as ProtoJson })),
        ...(compiled.routes ?? []).map((json) => ({ typeUrl: TypeUrl.RouteConfiguration, name: json.name!, json: json as unknown as ProtoJson })),
      ],
    };
  };
}
