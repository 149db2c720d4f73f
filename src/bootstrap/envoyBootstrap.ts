// The minimal Envoy bootstrap that points an Envoy at egress-xds: node
// identity, ADS over gRPC (v3) for Clusters and Listeners, one static cluster
// for the control plane speaking HTTP/2, and the admin interface on loopback.
import { isIP } from 'node:net';
import { TypeUrl } from '../envoy/typeUrls.js';

/** Files on the Envoy host for reaching an xDS server that serves TLS (--xds-tls-*). */
export interface BootstrapTls {
  /** CA that signed the control plane's certificate. */
  readonly caFile: string;
  /** Envoy's own certificate and key, when the control plane requires mTLS. */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** The name the control plane's certificate must carry; default: the xDS host. */
  readonly serverName?: string;
}

export interface BootstrapOptions {
  readonly nodeId: string;
  readonly cluster: string;
  readonly xdsHost: string;
  readonly xdsPort: number;
  /**
   * Several control-plane replicas (serve --store etcd://): every address is an
   * endpoint of the xDS cluster, and when the replica an Envoy streams from
   * dies, the stream is opened again to another. Default: xdsHost:xdsPort only.
   */
  readonly xdsAddresses?: readonly { readonly host: string; readonly port: number }[];
  /** DeltaAggregatedResources instead of state of the world. */
  readonly delta: boolean;
  readonly adminPort: number;
  readonly tls?: BootstrapTls;
  /**
   * Envoy's internal-listener bootstrap extension (Envoy >= 1.25), without which Envoy
   * rejects the internal listeners of serve --forward-proxy-inspect-connect. Off by
   * default: older Envoys do not know the extension.
   */
  readonly internalListeners?: boolean;
}

export const INTERNAL_LISTENER_EXTENSION = 'envoy.bootstrap.internal_listener';

function upstreamTls(tls: BootstrapTls, xdsHost: string): Record<string, unknown> {
  const serverName = tls.serverName ?? xdsHost;
  const byAddress = isIP(serverName) !== 0;
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': TypeUrl.UpstreamTlsContext,
      // SNI carries names only, never addresses.
      ...(byAddress ? {} : { sni: serverName }),
      common_tls_context: {
        // gRPC servers speak HTTP/2 over TLS only when ALPN selects it.
        alpn_protocols: ['h2'],
        validation_context: {
          trusted_ca: { filename: tls.caFile },
          match_typed_subject_alt_names: [{ san_type: byAddress ? 'IP_ADDRESS' : 'DNS', matcher: { exact: serverName } }],
        },
        ...(tls.certFile && tls.keyFile
          ? { tls_certificates: [{ certificate_chain: { filename: tls.certFile }, private_key: { filename: tls.keyFile } }] }
          : {}),
      },
    },
  };
}

export const XDS_CLUSTER = 'xds_cluster';

/** In Envoy's own YAML style (snake_case ProtoJSON), as the docs and seeds write it. */
export function buildBootstrap(options: BootstrapOptions): Record<string, unknown> {
  const addresses = options.xdsAddresses?.length ? options.xdsAddresses : [{ host: options.xdsHost, port: options.xdsPort }];
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
          // A name is resolved (and re-resolved) by Envoy, every record an endpoint
          // (one DNS name for all replicas works); addresses are used as they are.
          type: addresses.every((a) => isIP(a.host)) ? 'STATIC' : 'STRICT_DNS',
          connect_timeout: '5s',
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': TypeUrl.HttpProtocolOptions,
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          ...(options.tls ? { transport_socket: upstreamTls(options.tls, options.xdsHost) } : {}),
          load_assignment: {
            cluster_name: XDS_CLUSTER,
            endpoints: [
              { lb_endpoints: addresses.map((a) => ({ endpoint: { address: { socket_address: { address: a.host, port_value: a.port } } } })) },
            ],
          },
        },
      ],
    },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: options.adminPort } } },
    ...(options.internalListeners === true && {
      bootstrap_extensions: [{ name: INTERNAL_LISTENER_EXTENSION, typed_config: { '@type': TypeUrl.InternalListenerBootstrap } }],
    }),
  };
}
