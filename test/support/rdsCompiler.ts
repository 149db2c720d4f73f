// A small group compiler for RDS tests: one route table per policy ("http|NAME"), whose one
// virtual host's domains are the policy's names, and one listener whose HTTP connection
// managers name them all over RDS (as the port-80 chains of the real compiler do).
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import type { Policy } from '../../src/policy/model.js';
import type { CompiledGroup } from '../../src/snapshot/cache.js';

export function rdsCompiler(policies: readonly Policy[]): CompiledGroup {
  const names = policies.map((p) => `http|${p.name}`).sort();
  return {
    resources: [
      { typeUrl: TypeUrl.Cluster, name: 'c', json: { name: 'c', type: 'STATIC', connectTimeout: '1s' } },
      {
        typeUrl: TypeUrl.Listener,
        name: 'l',
        json: {
          name: 'l',
          address: { socketAddress: { address: '0.0.0.0', portValue: 15001 } },
          filterChains: names.map((name) => ({
            name,
            filters: [
              {
                name: 'envoy.filters.network.http_connection_manager',
                typedConfig: {
                  '@type': TypeUrl.HttpConnectionManager,
                  statPrefix: 'h',
                  rds: { configSource: { ads: {}, resourceApiVersion: 'V3' }, routeConfigName: name },
                  httpFilters: [{ name: 'envoy.filters.http.router', typedConfig: { '@type': TypeUrl.HttpRouter } }],
                },
              },
            ],
          })),
        },
      },
      ...policies.map((p) => ({
        typeUrl: TypeUrl.RouteConfiguration,
        name: `http|${p.name}`,
        json: { name: `http|${p.name}`, virtualHosts: [{ name: 'v', domains: [...p.allow.sni], routes: [{ match: { prefix: '/' }, route: { cluster: 'c' } }] }] },
      })),
    ],
  };
}

