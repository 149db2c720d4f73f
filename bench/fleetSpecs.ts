// The policies of bench/fleet.ts: one per host, and one global.
import type { PolicySpec } from '../src/policy/model.js';

export const hostSpec = (i: number, tag = 'a'): PolicySpec => ({
  nodes: [`host-${i}`],
  sources: [`10.${(i >> 14) & 255}.${(i >> 6) & 255}.${(i & 63) * 4}/30`],
  allow: { sni: [`h${i}-${tag}.fleet.example`] },
});
export const globalSpec = (tag = 'a', extraNames = 0): PolicySpec => ({
  sources: ['172.31.0.0/16'],
  allow: {
    sni: ['github.com', `global-${tag}.fleet.example`, ...Array.from({ length: extraNames }, (_, i) => `n${i}.a-rather-long-name-to-make-the-listener-large.example`)],
  },
});
