// The sources (policy files) that claim their policies, so that other writers are refused.
// Claims are counted and each is released once, so overlapping claims of one source (a
// watcher restarted while the old one closes) cannot release each other's. Both stores use it.
export interface SourceClaims {
  /** Adds a claim; the returned function releases it (once, however often it is called). */
  claim(source: string): () => void;
  has(source: string): boolean;
}

export function createSourceClaims(): SourceClaims {
  const claimed = new Map<string, number>();
  return {
    claim(source) {
      claimed.set(source, (claimed.get(source) ?? 0) + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const count = (claimed.get(source) ?? 1) - 1;
        if (count <= 0) claimed.delete(source);
        else claimed.set(source, count);
      };
    },
    has: (source) => claimed.has(source),
  };
}
