// The history: append-only files of JSON lines, one line per commit, and the
// store's write-ahead log. A commit is durable (and may be acknowledged) once
// its line is fsynced; the state file is only a checkpoint of the journal.
// One line per commit keeps a multi-policy commit (a batch, a policy file
// edit) atomic: a crash mid-append leaves a torn last line, which recovery
// cuts off.
//
// Group commit: commits that arrive while an fsync is under way are written
// together with one write and one fsync, so a thousand writers pay for a few
// fsyncs, not a thousand, and each waits for at most the fsync after its own.
//
// Segments: the active file (history.jsonl) is sealed, by a rename, into
// history-FIRST-LAST.jsonl when the store checkpoints; from then on it is only
// read for the history API and dropped once expired (policyStore.ts).
import { open, readFile, rename, type FileHandle } from 'node:fs/promises';
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
  /** Bytes in the active file. */
  readonly size: number;
  /** Appends and fsyncs one commit; on failure the file is cut back so nothing half-written stays. */
  append(commit: Commit): Promise<void>;
  /** Appends and fsyncs several commits with one write and one fsync: all or none. */
  appendMany(commits: readonly Commit[]): Promise<void>;
  /**
   * Renames the active file to `to` (durably: the directory is fsynced) and
   * continues in a new, empty active file. Call only between appends.
   */
  seal(to: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * The complete commits of a history file's text, and where the good part ends.
 * A torn last line is a crash artefact; garbage followed by good lines is not,
 * and is refused rather than guessed at.
 */
export function parseCommits(text: string, path: string): { commits: Commit[]; goodBytes: number; totalBytes: number } {
  const commits: Commit[] = [];
  let goodBytes = 0;
  let offset = 0;
  let start = 0;
  while (start < text.length) {
    const newline = text.indexOf('\n', start);
    const complete = newline >= 0;
    const line = complete ? text.slice(start, newline) : text.slice(start);
    start = complete ? newline + 1 : text.length;
    let commit: unknown;
    try {
      commit = complete && line !== '' ? JSON.parse(line) : undefined;
    } catch {
      commit = undefined;
    }
    const bytes = Buffer.byteLength(line) + (complete ? 1 : 0);
    if (complete && isCommit(commit)) {
      if (goodBytes !== offset) {
        throw new StoreError(`history ${path} is corrupt before byte ${offset} (not a torn tail); restore it from a backup`, path);
      }
      commits.push(commit);
      offset += bytes;
      goodBytes = offset;
    } else {
      offset += bytes;
    }
  }
  return { commits, goodBytes, totalBytes: offset };
}

/** The commits of a sealed segment (read-only). */
export async function readSegment(path: string): Promise<Commit[]> {
  return parseCommits(await readFile(path, 'utf8'), path).commits;
}

/** Reads every complete commit of the active file and cuts off a torn tail (a crash mid-append). */
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
    const { commits, goodBytes, totalBytes } = parseCommits(await handle.readFile('utf8'), path);
    if (goodBytes < totalBytes) {
      logger.warn('history: cutting off a torn tail left by a crash', { path, keptBytes: goodBytes, droppedBytes: totalBytes - goodBytes });
      await handle.truncate(goodBytes);
      await handle.sync();
    }
    if (created) await fsyncDirectory(dirname(path));
    let length = goodBytes;
    let broken = false;

    const appendMany = async (batch: readonly Commit[]): Promise<void> => {
      const bytes = Buffer.from(batch.map((commit) => `${JSON.stringify(commit)}\n`).join(''), 'utf8');
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
    };

    const journal: Journal = {
      path,
      get broken() {
        return broken;
      },
      get size() {
        return length;
      },
      append: (commit) => appendMany([commit]),
      appendMany,
      async seal(to) {
        // The open handle follows the renamed file; the new active file is
        // created before the directory is synced, so both names land together.
        await rename(path, to);
        let next: FileHandle;
        try {
          next = await open(path, 'a+', 0o600);
        } catch (error) {
          broken = true; // Appends would go to the sealed file.
          throw error;
        }
        const old = handle;
        handle = next;
        length = 0;
        await old.close().catch(() => {});
        await fsyncDirectory(dirname(path));
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
