// The history: an append-only file of JSON lines, one line per commit, and the
// store's write-ahead log. A commit is durable (and may be acknowledged) once
// its line is fsynced; the state file is only a checkpoint of the journal.
// One line per commit keeps a multi-policy commit (a policy file edit) atomic:
// a crash mid-append leaves a torn last line, which recovery cuts off.
import { open, type FileHandle } from 'node:fs/promises';
import type { Logger } from '../log.js';
import { fsyncDirectory } from './durableFile.js';
import { dirname } from 'node:path';
import { describeFsError, StoreError } from './storeError.js';
import type { PlannedChange } from './writeRules.js';

export type CommitChange = PlannedChange;

export interface Commit {
  /** Store revision this commit produced: one more than the previous commit's. */
  readonly revision: number;
  readonly at: string;
  readonly client: string;
  readonly changes: readonly CommitChange[];
}

function isCommit(value: unknown): value is Commit {
  const commit = value as Commit;
  return (
    typeof value === 'object' && value !== null &&
    Number.isInteger(commit.revision) && commit.revision > 0 &&
    typeof commit.at === 'string' && typeof commit.client === 'string' &&
    Array.isArray(commit.changes) &&
    commit.changes.every((c) => (c.action === 'put' ? typeof c.spec === 'object' && c.spec !== null : c.action === 'delete') &&
      typeof c.name === 'string' && Number.isInteger(c.revision) && typeof c.source === 'string')
  );
}

export interface Journal {
  readonly path: string;
  /** True after an append failed and its partial line could not be cut off. */
  readonly broken: boolean;
  /** Appends and fsyncs one commit; on failure the file is cut back so nothing half-written stays. */
  append(commit: Commit): Promise<void>;
  close(): Promise<void>;
}

/**
 * Reads every complete commit and cuts off a torn tail (a crash mid-append).
 * Garbage followed by good lines is not a crash artefact: refuse to guess.
 */
export async function openJournal(path: string, logger: Logger): Promise<{ journal: Journal; commits: Commit[] }> {
  let handle: FileHandle;
  let created = false;
  try {
    handle = await open(path, 'a+', 0o600);
    created = (await handle.stat()).size === 0;
  } catch (error) {
    throw new StoreError(`cannot open history ${path}: ${describeFsError(error)}`, path, { cause: error });
  }
  try {
    const text = (await handle.readFile('utf8'));
    const commits: Commit[] = [];
    let goodBytes = 0;
    let offset = 0;
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      const complete = i < lines.length - 1;
      let commit: unknown;
      try {
        commit = complete && line !== '' ? JSON.parse(line) : undefined;
      } catch {
        commit = undefined;
      }
      if (complete && isCommit(commit)) {
        if (goodBytes !== offset) {
          throw new StoreError(`history ${path} is corrupt before byte ${offset} (not a torn tail); restore it from a backup`, path);
        }
        commits.push(commit);
        offset += Buffer.byteLength(line) + 1;
        goodBytes = offset;
      } else {
        offset += Buffer.byteLength(line) + (complete ? 1 : 0);
      }
    }
    if (goodBytes < offset) {
      logger.warn('history: cutting off a torn tail left by a crash', { path, keptBytes: goodBytes, droppedBytes: offset - goodBytes });
      await handle.truncate(goodBytes);
      await handle.sync();
    }
    if (created) await fsyncDirectory(dirname(path));
    let length = goodBytes;
    let broken = false;
    const journal: Journal = {
      path,
      get broken() {
        return broken;
      },
      async append(commit) {
        const bytes = Buffer.from(`${JSON.stringify(commit)}\n`, 'utf8');
        try {
          let written = 0;
          while (written < bytes.length) {
            written += (await handle.write(bytes, written, bytes.length - written)).bytesWritten;
          }
          await handle.datasync();
        } catch (error) {
          // Leave no partial line for the next append to follow; if even that
          // fails, the file's tail is unknown and no further append is safe.
          await handle.truncate(length).then(
            () => handle.datasync(),
          ).catch(() => {
            broken = true;
          });
          throw error;
        }
        length += bytes.length;
      },
      close: () => handle.close(),
    };
    return { journal, commits };
  } catch (error) {
    await handle.close().catch(() => {});
    if (error instanceof StoreError) throw error;
    throw new StoreError(`cannot read history ${path}: ${describeFsError(error)}`, path, { cause: error });
  }
}
