// Envoy's v3 protos, loaded once from the @grpc/grpc-js-xds dependency with
// protobufjs reflection (nothing third-party is copied into this repo).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);

/** The files whose closure holds every message egress-xds encodes or checks. */
export const ENVOY_PROTO_FILES = [
  'envoy/config/bootstrap/v3/bootstrap.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  'envoy/extensions/filters/listener/original_dst/v3/original_dst.proto',
  'envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/clusters/dynamic_forward_proxy/v3/cluster.proto',
  'envoy/extensions/network/dns_resolver/cares/v3/cares_dns_resolver.proto',
  'envoy/service/discovery/v3/ads.proto',
  // The hardened listener: filter_chain_matcher's inputs and custom matchers, and its chains' filters.
  'envoy/extensions/matching/common_inputs/network/v3/network_inputs.proto',
  'xds/type/matcher/v3/ip.proto',
  'xds/type/matcher/v3/domain.proto',
  'envoy/extensions/filters/network/sni_dynamic_forward_proxy/v3/sni_dynamic_forward_proxy.proto',
  'envoy/extensions/filters/network/set_filter_state/v3/set_filter_state.proto',
  'envoy/extensions/filters/network/connection_limit/v3/connection_limit.proto',
  'google/protobuf/wrappers.proto',
  // The Access Log Service the control plane serves (src/als), and what it receives.
  'envoy/service/accesslog/v3/als.proto',
  // Access logs, the port-80 HTTP path and the DNS listener (src/compile/accessLog.ts, httpPath.ts, dns.ts).
  'envoy/extensions/access_loggers/grpc/v3/als.proto',
  'envoy/extensions/access_loggers/filters/cel/v3/cel.proto',
  'envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/dynamic_forward_proxy/v3/dynamic_forward_proxy.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/udp/dns_filter/v3/dns_filter.proto',
  'envoy/extensions/bootstrap/internal_listener/v3/internal_listener.proto',
] as const;

export function envoyProtoIncludeDirs(): string[] {
  const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
  // protobufjs ships google/protobuf/*.proto (descriptor.proto among them).
  const protobufjsDir = dirname(require.resolve('protobufjs/package.json'));
  return [...['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d)), protobufjsDir];
}

let cachedRoot: protobuf.Root | undefined;

/** One resolved Root for the process; loading takes a moment, so it is done once. */
export function envoyRoot(): protobuf.Root {
  if (cachedRoot) return cachedRoot;
  const includeDirs = envoyProtoIncludeDirs();
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const dir of includeDirs) {
      const candidate = join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return target;
  };
  root.loadSync([...ENVOY_PROTO_FILES], { keepCase: false });
  root.resolveAll();
  cachedRoot = root;
  return root;
}

export function envoyType(fullName: string): protobuf.Type {
  return envoyRoot().lookupType(fullName);
}
