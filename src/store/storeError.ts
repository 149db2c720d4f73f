// A store that cannot start or cannot write says which path and why, so an
// operator can fix it without reading code ("data dir /var/lib/x is not writable").

export class StoreError extends Error {
  constructor(
    message: string,
    /** The file or directory the problem is in. */
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StoreError';
  }
}

/** "EACCES: permission denied" style text for an fs error, without the repeated path. */
export function describeFsError(error: unknown): string {
  const err = error as NodeJS.ErrnoException;
  const reasons: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOTDIR: 'a path component is not a directory',
    ENOSPC: 'no space left on device',
    EDQUOT: 'disk quota exceeded',
    ENOENT: 'no such file or directory',
    EISDIR: 'is a directory',
  };
  const code = err?.code;
  if (code && reasons[code]) return `${reasons[code]} (${code})`;
  return err instanceof Error ? err.message : String(error);
}
