// Protobuf varints of lengths (uint32), written by hand where a message is assembled from
// bytes already encoded (fastEncode.ts's templates, xds/wire.ts's responses): one copy of
// the rule for both.

/** Bytes of the varint of `n` (0 ≤ n < 2³²). */
export const varintSize = (n: number): number => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5);

/** Writes the varint of `value` (0 ≤ value < 2³²) at `pos`; returns the position after it. */
export function writeVarintAt(out: Uint8Array, pos: number, value: number): number {
  while (value > 127) {
    out[pos++] = (value & 127) | 128;
    value >>>= 7;
  }
  out[pos++] = value;
  return pos;
}
