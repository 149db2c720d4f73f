// The minimal Envoy bootstrap that points an Envoy at egress-xds: node
// identity, ADS over gRPC (v3) for Clusters and Listeners, one static cluster
// for the control plane speaking HTTP/2, and the admin interface on loopback.
import { isIP } from 'node:net';
import { TypeUrl } from '../envoy/typeUrls.js';

export interface BootstrapOptions {
  readonly nodeId: string;
  readonly cluster: string;
  readonly xdsHost: string;
  readonly xdsPort: number;
  /** DeltaAggregatedResources instead of state of the world. */
  readonly delta: boolean;
  readonly adminPort: number;
}

export const XDS_CLUSTER = 'xds_cluster';

/** In Envoy's own YAML style (snake_case ProtoJSON), as the docs and seeds write it. */
export function buildBootstrap(options: BootstrapOptions): Record<string, unknown> {
  const adsSource = { resource_api_version: 'V3', ads: {} };
  return {
    node: { id: options.nodeId, cluster: options.cluster },
    dynamic_resources: {
      ads_config: {
        api_type: options.delta ? 'DELTA_GRPC' : 'GRPC',
        transport_api_version: 'V3',
        grpc_services: [{ envoy_grpc: { cluster_name: XDS_CLUSTER } }],
        set_node_on_first_message_only: true,
      },
      cds_config: adsSource,
      lds_config: adsSource,
    },
    static_resources: {
      clusters: [
        {
          name: XDS_CLUSTER,
          // A name is resolved (and re-resolved) by Envoy; an address is used as is.
          type: isIP(options.xdsHost) ? 'STATIC' : 'STRICT_DNS',
          connect_timeout: '5s',
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': TypeUrl.HttpProtocolOptions,
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          load_assignment: {
            cluster_name: XDS_CLUSTER,
            endpoints: [
              { lb_endpoints: [{ endpoint: { address: { socket_address: { address: options.xdsHost, port_value: options.xdsPort } } } }] },
            ],
          },
        },
      ],
    },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: options.adminPort } } },
  };
}
