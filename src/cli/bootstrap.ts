// Placeholder until the bootstrap command lands (replaced in this session).
export async function bootstrapCommand(_argv: string[]): Promise<number> {
  process.stderr.write('egress-xds bootstrap: not built yet\n');
  return 1;
}
