// A part the flags turn off, which must then not be there: install removes what
// an earlier install left (the cap after --max-connections-per-source 0), status
// expects nothing of it, and a dry-run install prints nothing for it.
import type { Part } from './part.js';

export function absent(part: Part): Part {
  return {
    name: `${part.name} (off)`,
    observe: async (context) => {
      const state = await part.observe(context);
      return { pieces: [], install: () => state.remove(), remove: () => state.remove() };
    },
    assumeAbsent: () => ({ pieces: [], install: () => [], remove: () => [] }),
    assumePresent: () => ({ pieces: [], install: () => [], remove: () => [] }),
  };
}
