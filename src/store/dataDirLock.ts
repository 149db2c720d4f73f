// One server per data dir: two writers would interleave history lines and
// overwrite each other's state. The lock is flock(2) on DATA_DIR/lock, so the
// kernel decides: it holds across containers and pid namespaces sharing the
// volume (a pid says nothing there: every container's server is pid 1), and it
// is released by the kernel when the holder dies, however it dies — no stale
// lock to recognise or take over.
//
// Node has no flock(). A flock belongs to the open file description, not to
// the process: we open the file, hand that same description to a short-lived
// `flock -x -n 3` (util-linux) as its fd 3, and the lock it takes stays with
// the description our handle keeps open after the child has exited. Closing
// the handle (or dying) releases it. The file's content (pid, host, start time)
// only names the holder for the error message; the file is never deleted, since
// a server locking a deleted inode would not exclude one creating a new file.
import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDirectory } from './durableFile.js';
import { describeFsError, StoreError } from './storeError.js';

export const LOCK_FILE = 'lock';

/** Data dirs locked by this process, for a clearer message than the kernel's refusal. */
const lockedHere = new Set<string>();

interface LockContent {
  pid: number;
  hostname: string;
  startedAt: string;
}

/** Runs `flock -x -n 3` on the handle's open file description: true when locked, false when another holds it. */
function flockExclusive(handle: FileHandle, path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    const child = spawn('flock', ['-x', '-n', '3'], { stdio: ['ignore', 'ignore', 'pipe', handle.fd] });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < 2000) stderr += chunk;
    });
    child.once('error', (error: NodeJS.ErrnoException) => {
      const why = error.code === 'ENOENT' ? 'the flock command (util-linux) is not installed' : describeFsError(error);
      reject(new StoreError(`cannot lock ${path}: ${why}`, path, { cause: error }));
    });
    child.once('close', (code) => {
      // flock(1) exits 1 when -n finds the lock taken; anything else is a failure to lock at all.
      if (code === 0) resolve(true);
      else if (code === 1 && stderr.trim() === '') resolve(false);
      else reject(new StoreError(`cannot lock ${path}: flock exited ${code}${stderr ? `: ${stderr.trim()}` : ''}`, path));
    });
  });
}

async function describeHolder(handle: FileHandle): Promise<string> {
  try {
    const text = (await handle.readFile({ encoding: 'utf8' })).trim();
    const holder = JSON.parse(text) as Partial<LockContent>;
    if (typeof holder.pid === 'number') {
      return `process ${holder.pid} on ${holder.hostname ?? 'an unknown host'} (started ${holder.startedAt ?? 'at an unknown time'})`;
    }
  } catch {
    // An old-format or empty file: the holder has not written its name yet.
  }
  return 'another process';
}

/** Takes the data dir's lock; the returned function releases it. */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const path = join(dataDir, LOCK_FILE);
  if (lockedHere.has(path)) throw new StoreError(`data dir ${dataDir} is already open in this process`, dataDir);
  lockedHere.add(path);
  let handle: FileHandle | undefined;
  try {
    handle = await open(path, 'a+', 0o644);
    if (!(await flockExclusive(handle, path))) {
      const holder = await describeHolder(handle);
      throw new StoreError(
        `data dir ${dataDir} is in use by ${holder}, which holds the lock on ${path}; ` +
          'stop that server first (one server per data dir; the lock is released when its process exits)',
        path,
      );
    }
    const content: LockContent = { pid: process.pid, hostname: hostname(), startedAt: new Date().toISOString() };
    await handle.truncate(0);
    await handle.write(`${JSON.stringify(content)}\n`, 0, 'utf8');
    await handle.sync();
    await fsyncDirectory(dataDir);
  } catch (error) {
    lockedHere.delete(path);
    await handle?.close().catch(() => {});
    if (error instanceof StoreError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const what = code === 'EACCES' || code === 'EPERM' || code === 'EROFS' ? 'is not writable' : 'cannot be locked';
    throw new StoreError(`data dir ${dataDir} ${what}: opening ${path}: ${describeFsError(error)}`, dataDir, { cause: error });
  }
  const held = handle;
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    try {
      await held.close(); // The kernel drops the flock with the last reference to the description.
    } finally {
      lockedHere.delete(path);
    }
  };
}
