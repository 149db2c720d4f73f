// egress-xds serve: the control plane (ADS + admin API) until SIGTERM/SIGINT.
import { loadAdminToken } from '../admin/auth.js';
import { createLogger } from '../log.js';
import { StartupError, startControlPlane } from '../server/controlPlane.js';
import { PolicyFileError } from '../store/policyFile.js';
import { StoreError } from '../store/storeError.js';
import { UsageError, parseFlags, parseHostPort, parsePort, withUsage } from './flags.js';
import { XDS_LIMIT_FLAG_OPTIONS, XDS_LIMIT_USAGE, parseXdsLimitFlags } from './xdsLimitFlags.js';
import { loadXdsTls, parseNodeIdentity } from './xdsTlsFlags.js';
import { COMPILE_FLAGS, COMPILE_USAGE, parseCompileFlags } from './compileFlags.js';
import { FORWARD_FLAGS, FORWARD_USAGE, parseForwardFlags } from './forwardFlags.js';
import { DNS_FLAGS, DNS_USAGE, parseDnsFlags } from './dnsFlags.js';
import { DENIAL_FLAGS, DENIAL_USAGE, parseDenialFlags } from './denialFlags.js';
import { PUSH_FLAGS, PUSH_USAGE, parsePushFlags } from './pushFlags.js';
import { STORE_FLAGS, STORE_USAGE, parseStoreFlags } from './storeFlags.js';
import { mallocSettings } from './mallocSettings.js';
import { STORE_BACKEND_FLAGS, STORE_BACKEND_USAGE, parseReplicaId, parseStoreBackendFlags } from './storeBackendFlags.js';

const USAGE = `usage: egress-xds serve [--xds-address 0.0.0.0:18000] [--admin-address 127.0.0.1:18080]
                        [--data-dir ./data | --store etcd://HOST:PORT[,HOST:PORT...] [--etcd-*]]
                        [--policy FILE] [--admin-token-file FILE]
                        [--listener-port 15001] [--ipv6]
                        [--profile hardened|seed] [--max-connections-per-source 512] [--upstream-mark 0x20000]
                        [--forward-proxy [--forward-proxy-ports 10000,10001] [--forward-proxy-address ADDR]]
                        [--transparent=false] [--dns-resolver ADDR ...] [--dns-lookup-family V4_ONLY]
                        [--dns-port 15053] [--dns-answer-address 198.18.0.1]
                        [--xds-tls-cert FILE --xds-tls-key FILE [--xds-client-ca FILE
                          [--node-identity uri-san|dns-san|cn|none] [--node-identity-prefix URI]]]
                        [--xds-max-streams N] [--xds-max-streams-per-connection N]
                        [--xds-max-request-bytes N] [--xds-max-node-id-bytes N] [--xds-stuck-seconds N]
                        [--push-window-ms 10] [--push-max-delay-ms 100] [--compile-workers N] [--compile-warmup true|false]

  --xds-address        where Envoys connect (ADS over gRPC, SotW and Delta)
  --admin-address      the admin REST API; off loopback it requires a token
  --data-dir           the durable policy store (created if missing)
${STORE_BACKEND_USAGE}
  --policy FILE        load policies from a YAML file and apply its edits live
  --admin-token-file   bearer token for the admin API (or EGRESS_XDS_ADMIN_TOKEN)
  --listener-port      the port of Envoy's transparent listener (the agent's --port)
  --ipv6               the listener also binds [::] on the same port
${COMPILE_USAGE}
${FORWARD_USAGE}
${DNS_USAGE}
  --xds-tls-cert/-key  serve ADS over TLS with this certificate chain and key (PEM)
  --xds-client-ca      and require Envoys to present a certificate this CA signed (mTLS)
  --node-identity      with mTLS, where the node id must appear in the client certificate:
                       uri-san (default: a URI SAN PREFIX+ID), dns-san, cn, or none;
                       a mismatch is refused with PERMISSION_DENIED
  --node-identity-prefix  the uri-san prefix (default spiffe://egress-xds/node/)
${XDS_LIMIT_USAGE}
${DENIAL_USAGE}
${PUSH_USAGE}
${STORE_USAGE}

On a first start with no --policy, the store receives the embedded default policy
(seed 002: github.com and www.github.com from 172.31.0.0/16).`;

export async function serveCommand(argv: string[]): Promise<number> {
  return withUsage('serve', USAGE, argv, async () => {
    const { values } = parseFlags(argv, {
      'xds-address': { type: 'string', default: '0.0.0.0:18000' },
      'admin-address': { type: 'string', default: '127.0.0.1:18080' },
      'data-dir': { type: 'string' },
      ...STORE_BACKEND_FLAGS,
      policy: { type: 'string' },
      'admin-token-file': { type: 'string' },
      'listener-port': { type: 'string', default: '15001' },
      ipv6: { type: 'boolean', default: false },
      'xds-tls-cert': { type: 'string' },
      'xds-tls-key': { type: 'string' },
      'xds-client-ca': { type: 'string' },
      'node-identity': { type: 'string' },
      'node-identity-prefix': { type: 'string' },
      ...XDS_LIMIT_FLAG_OPTIONS,
      ...COMPILE_FLAGS,
      ...FORWARD_FLAGS,
      ...DENIAL_FLAGS,
      ...PUSH_FLAGS,
      ...DNS_FLAGS,
      ...STORE_FLAGS,
    });
    const xds = parseHostPort('--xds-address', values['xds-address']);
    const admin = parseHostPort('--admin-address', values['admin-address']);
    const storeBackend = parseStoreBackendFlags({ ...values, 'data-dir': values['data-dir'] ?? './data' }, values['data-dir'] !== undefined);
    const replicaId = parseReplicaId(values['replica-id']);
    const listenerPort = parsePort('--listener-port', values['listener-port']);
    const compileFlags = parseCompileFlags(values);
    const forwardFlags = parseForwardFlags(values, listenerPort);
    const dnsFlags = parseDnsFlags(values);
    const xdsTls = await loadXdsTls({ cert: values['xds-tls-cert'], key: values['xds-tls-key'], clientCa: values['xds-client-ca'] });
    const nodeIdentity = parseNodeIdentity(
      {
        ...(values['node-identity'] !== undefined ? { identity: values['node-identity'] } : {}),
        ...(values['node-identity-prefix'] !== undefined ? { prefix: values['node-identity-prefix'] } : {}),
      },
      xdsTls?.clientCa !== undefined,
    );
    const xdsLimits = parseXdsLimitFlags(values);
    const denials = parseDenialFlags(values);
    const pushFlags = parsePushFlags(values);
    const { adminAllowedHosts, ...storeOptions } = parseStoreFlags(values);
    const logger = createLogger();
    const allocator = mallocSettings();
    logger.info(allocator.message, allocator.fields);
    const token = await loadAdminToken({ ...(values['admin-token-file'] !== undefined ? { file: values['admin-token-file'] } : {}), logger });
    if (!token.ok) throw new UsageError(`${token.error.field}: ${token.error.message}`);

    let controlPlane;
    try {
      controlPlane = await startControlPlane({
        xdsAddress: `${xds.host.includes(':') ? `[${xds.host}]` : xds.host}:${xds.port}`,
        ...(xdsTls ? { xdsTls } : {}),
        nodeIdentity,
        xdsLimits,
        adminHost: admin.host,
        adminPort: admin.port,
        storeOptions,
        ...(adminAllowedHosts ? { adminAllowedHosts } : {}),
        dataDir: values['data-dir'] ?? './data',
        storeBackend,
        ...(replicaId !== undefined ? { replicaId } : {}),
        ...(values.policy !== undefined ? { policyFile: values.policy } : {}),
        ...(token.value !== undefined ? { adminToken: token.value } : {}),
        embeddedDefault: true,
        compile: { port: listenerPort, ipv6: values.ipv6, ...compileFlags, ...forwardFlags, ...dnsFlags },
        denials,
        ...pushFlags,
        logger,
      });
    } catch (error) {
      if (error instanceof StartupError || error instanceof StoreError || error instanceof PolicyFileError) {
        process.stderr.write(`egress-xds serve: ${error.message}\n`);
        return 1;
      }
      throw error;
    }
    const running = controlPlane;
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        logger.info('shutting down', { signal });
        resolve();
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    await running.close();
    return 0;
  });
}
