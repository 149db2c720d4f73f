// egress-xds store migrate: moves policies and history between the file store
// and etcd (src/store/storeMigrate.ts). Stop the servers on both sides first.
import { createLogger } from '../log.js';
import { migrateStore } from '../store/storeMigrate.js';
import type { StoreBackend } from '../store/storeBackend.js';
import { StoreError } from '../store/storeError.js';
import { UsageError, parseFlags, withUsage } from './flags.js';
import { STORE_BACKEND_FLAGS, etcdBackend, type StoreBackendValues } from './storeBackendFlags.js';

const USAGE = `usage: egress-xds store migrate --from DIR|etcd://HOST:PORT[,...] --to DIR|etcd://HOST:PORT[,...] [--force]
                              [--etcd-prefix P] [--etcd-ca FILE] [--etcd-cert FILE --etcd-key FILE] [--etcd-auth-file FILE]

Copies every policy and the whole history from one store to the other (a data dir of
the file store, or etcd under --etcd-prefix), then reads the target back and compares.
Stop the servers using either store first (the file store's lock enforces it for a dir).
A target that already holds a store is refused unless --force, which replaces it
(for a data dir: its state file and every history file, sealed segments included).
Into etcd, history keeps its revisions and new ones start above them.`;

function backendOf(flag: string, value: string | undefined, values: StoreBackendValues): StoreBackend {
  if (!value) throw new UsageError(`${flag} is required (a data dir or etcd://HOST:PORT[,...])`);
  return value.startsWith('etcd://') ? etcdBackend(flag, value, values) : { kind: 'file', dataDir: value };
}

export async function storeCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'migrate') {
    if (sub === '--help' || sub === '-h') {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    process.stderr.write(`egress-xds store: unknown sub-command "${sub ?? ''}"\n\n${USAGE}\n`);
    return 2;
  }
  return withUsage('store migrate', USAGE, rest, async () => {
    const { values } = parseFlags(rest, {
      from: { type: 'string' },
      to: { type: 'string' },
      force: { type: 'boolean', default: false },
      ...STORE_BACKEND_FLAGS,
    });
    const from = backendOf('--from', values.from, values);
    const to = backendOf('--to', values.to, values);
    if (from.kind === 'file' && to.kind === 'file') throw new UsageError('one of --from and --to must be etcd://...; to copy a data dir, stop the server and copy the directory');
    const logger = createLogger({ level: 'warn' });
    try {
      const result = await migrateStore(from, to, { force: values.force, logger });
      process.stdout.write(`migrated ${result.policies} policies and ${result.historyEntries} history entries (store revision ${result.revision}) from ${values.from} to ${values.to}\n`);
      return 0;
    } catch (error) {
      if (error instanceof StoreError) {
        process.stderr.write(`egress-xds store migrate: ${error.message}\n`);
        return 1;
      }
      throw error;
    }
  });
}
