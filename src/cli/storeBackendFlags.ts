// The flags that choose the policy store: --data-dir (the embedded file store)
// or --store etcd://HOST:PORT[,...] with its TLS files, prefix and credentials.
// Shared by `serve` and `store migrate`. A bad value is a usage error naming it.
import { normalisePrefix, parseEtcdUrl, DEFAULT_ETCD_PREFIX } from '../store/etcdConnection.js';
import type { StoreBackend } from '../store/storeBackend.js';
import { UsageError } from './flags.js';

export const STORE_BACKEND_FLAGS = {
  store: { type: 'string' },
  'etcd-prefix': { type: 'string' },
  'etcd-ca': { type: 'string' },
  'etcd-cert': { type: 'string' },
  'etcd-key': { type: 'string' },
  'etcd-auth-file': { type: 'string' },
  'replica-id': { type: 'string' },
} as const;

export const STORE_BACKEND_USAGE = `  --store etcd://HOST:PORT[,HOST:PORT...]
                       keep policies and history in etcd instead of --data-dir, so several
                       replicas serve one state (docs/cluster.md)
  --etcd-prefix P      every key under P (default ${DEFAULT_ETCD_PREFIX})
  --etcd-ca FILE       talk to etcd over TLS, trusting this CA (PEM)
  --etcd-cert/--etcd-key FILE   client certificate for etcd (PEM)
  --etcd-auth-file FILE  etcd user and password, one line "user:password"
  --replica-id ID      this replica's name in GET /v1/nodes (default HOSTNAME:XDS_PORT)`;

export interface StoreBackendValues {
  store?: string;
  'etcd-prefix'?: string;
  'etcd-ca'?: string;
  'etcd-cert'?: string;
  'etcd-key'?: string;
  'etcd-auth-file'?: string;
  'replica-id'?: string;
}

/** An etcd:// URL (for --store, --from, --to) with the etcd flags → the backend. */
export function etcdBackend(flag: string, url: string, values: StoreBackendValues): StoreBackend {
  const location = parseEtcdUrl(url);
  if (!location.ok) throw new UsageError(`${flag} ${location.message}`);
  const prefix = normalisePrefix(values['etcd-prefix'] ?? DEFAULT_ETCD_PREFIX);
  if (!prefix.ok) throw new UsageError(`--etcd-prefix ${prefix.message}`);
  const cert = values['etcd-cert'];
  const key = values['etcd-key'];
  if ((cert === undefined) !== (key === undefined)) throw new UsageError('--etcd-cert and --etcd-key go together');
  const ca = values['etcd-ca'];
  const tls = ca !== undefined || cert !== undefined ? { ...(ca ? { caFile: ca } : {}), ...(cert ? { certFile: cert } : {}), ...(key ? { keyFile: key } : {}) } : undefined;
  return {
    kind: 'etcd',
    etcd: {
      endpoints: location.value.endpoints,
      prefix: prefix.value,
      ...(tls ? { tls } : {}),
      ...(values['etcd-auth-file'] !== undefined ? { authFile: values['etcd-auth-file'] } : {}),
    },
  };
}

/** serve's store: etcd with --store, else the data dir. Etcd flags without --store are a mistake worth naming. */
export function parseStoreBackendFlags(values: StoreBackendValues & { 'data-dir'?: string }, dataDirGiven: boolean): StoreBackend {
  if (values.store === undefined) {
    const stray = (['etcd-prefix', 'etcd-ca', 'etcd-cert', 'etcd-key', 'etcd-auth-file'] as const).find((flag) => values[flag] !== undefined);
    if (stray) throw new UsageError(`--${stray} needs --store etcd://...`);
    if (!values['data-dir']) throw new UsageError('--data-dir must not be empty');
    return { kind: 'file', dataDir: values['data-dir'] };
  }
  if (dataDirGiven) throw new UsageError('--store and --data-dir exclude each other: the policies live in one place');
  return etcdBackend('--store', values.store, values);
}

export function parseReplicaId(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(value)) throw new UsageError(`--replica-id may hold letters, digits and . _ : - (1 to 128 characters), got "${value}"`);
  return value;
}
