// One server per data dir: two writers would interleave history lines and
// overwrite each other's state. The lock is a file that appears whole (linked
// in, see create) holding the owner's pid. Node has no flock(), so a lock left
// by a killed server is recognised as stale when its pid is no longer alive (or
// is our own pid, as after a container restart where the server is pid 1 again)
// and taken over. Limits: a stale lock whose pid was reused by an unrelated live
// process is reported as held (the error names the file to remove); two servers
// taking over the same stale lock at the same moment can both succeed.
import { hostname } from 'node:os';
import { link, open, readFile, unlink } from 'node:fs/promises';
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
    return undefined; // Foreign or torn content (a writer without hard links that died mid-write).
  }
}

/**
 * Puts a complete lock file in place, or returns false when there is one. The
 * content is written to a temp file and hard-linked in (link fails with EEXIST,
 * atomically), so a server starting at the same moment never reads our lock
 * half-written and takes it for a dead writer's. Where the file system has no
 * hard links, the lock is created and written in place, with that window.
 */
async function create(path: string): Promise<boolean> {
  const content: LockContent = { pid: process.pid, hostname: hostname(), startedAt: new Date().toISOString() };
  const text = `${JSON.stringify(content)}\n`;
  const temp = `${path}.${process.pid}.tmp`;
  await writeSynced(temp, 'w', text);
  try {
    await link(temp, path);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw error;
  } finally {
    await unlink(temp).catch(() => {});
  }
  try {
    await writeSynced(path, 'wx', text);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

async function writeSynced(path: string, flags: 'w' | 'wx', text: string): Promise<void> {
  const handle = await open(path, flags, 0o644);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Takes the data dir's lock; the returned function releases it. */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const path = join(dataDir, LOCK_FILE);
  if (lockedHere.has(path)) throw new StoreError(`data dir ${dataDir} is already open in this process`, dataDir);
  // Claimed before the first await: the file alone cannot tell two opens in
  // this process apart (both see our own pid, which reads as a stale lock).
  lockedHere.add(path);
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
    lockedHere.delete(path);
    if (error instanceof StoreError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const what = code === 'EACCES' || code === 'EPERM' || code === 'EROFS' ? 'is not writable' : 'cannot be locked';
    throw new StoreError(`data dir ${dataDir} ${what}: creating ${path}: ${describeFsError(error)}`, dataDir, { cause: error });
  }
  return async () => {
    try {
      const holder = await readLock(path);
      if (holder?.pid === process.pid) await unlink(path).catch(() => {});
    } finally {
      // Only now: an open in between would take our file for its own and lose it to this unlink.
      lockedHere.delete(path);
    }
  };
}
