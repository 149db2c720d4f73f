// One server per data dir: two writers would interleave history lines and
// overwrite each other's state. The lock is a file created with O_EXCL holding
// the owner's pid. Node has no flock(), so a lock left by a killed server is
// recognised as stale when its pid is no longer alive (or is our own pid, as
// after a container restart where the server is pid 1 again) and taken over.
// Limit: a stale lock whose pid was reused by an unrelated live process is
// reported as held; the error names the file to remove.
import { hostname } from 'node:os';
import { open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDirectory } from './durableFile.js';
import { describeFsError, StoreError } from './storeError.js';

export const LOCK_FILE = 'lock';

/** Data dirs locked by this process: a second open in one process is refused too. */
const lockedHere = new Set<string>();

interface LockContent {
  pid: number;
  hostname: string;
  startedAt: string;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readLock(path: string): Promise<LockContent | undefined> {
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as Partial<LockContent>;
    return typeof parsed.pid === 'number' ? (parsed as LockContent) : undefined;
  } catch {
    return undefined; // Torn or foreign content: its writer died mid-write.
  }
}

async function create(path: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(path, 'wx', 0o644);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    const content: LockContent = { pid: process.pid, hostname: hostname(), startedAt: new Date().toISOString() };
    await handle.writeFile(`${JSON.stringify(content)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return true;
}

/** Takes the data dir's lock; the returned function releases it. */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const path = join(dataDir, LOCK_FILE);
  if (lockedHere.has(path)) throw new StoreError(`data dir ${dataDir} is already open in this process`, dataDir);
  try {
    let acquired = await create(path);
    if (!acquired) {
      const holder = await readLock(path);
      const stale = holder === undefined || holder.pid === process.pid || !processAlive(holder.pid);
      if (!stale) {
        throw new StoreError(
          `data dir ${dataDir} is in use by process ${holder.pid} on ${holder.hostname} since ${holder.startedAt}; ` +
            `stop that server, or delete ${path} if that process is not an egress-xds server`,
          path,
        );
      }
      await unlink(path).catch(() => {});
      acquired = await create(path);
      if (!acquired) throw new StoreError(`data dir ${dataDir} was locked by another server starting at the same time (${path})`, path);
    }
    await fsyncDirectory(dataDir);
  } catch (error) {
    if (error instanceof StoreError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const what = code === 'EACCES' || code === 'EPERM' || code === 'EROFS' ? 'is not writable' : 'cannot be locked';
    throw new StoreError(`data dir ${dataDir} ${what}: creating ${path}: ${describeFsError(error)}`, dataDir, { cause: error });
  }
  lockedHere.add(path);
  return async () => {
    lockedHere.delete(path);
    const holder = await readLock(path);
    if (holder?.pid === process.pid) await unlink(path).catch(() => {});
  };
}
