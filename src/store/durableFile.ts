// Writes that survive a kill -9 or a power cut once they return: file data is
// fsynced before it is renamed into place, and the directory is fsynced after,
// so the new name itself is on disk. A reader sees the old file or the new one,
// never a torn mix; a crash leaves at most a stray temp file behind.
import { open, rename } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** The temp name a replacement is written under; recovery deletes leftovers. */
export const tempPathFor = (path: string): string => join(dirname(path), `.${basename(path)}.tmp`);

export async function fsyncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Atomically replaces `path` with `data`. Callers serialise writes to one path. */
export async function replaceFileDurably(path: string, data: string): Promise<void> {
  const temp = tempPathFor(path);
  const handle = await open(temp, 'w', 0o600);
  try {
    await handle.writeFile(data, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, path);
  await fsyncDirectory(dirname(path));
}
