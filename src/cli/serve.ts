// Placeholder until the serve command lands (replaced in this session).
export async function serveCommand(_argv: string[]): Promise<number> {
  process.stderr.write('egress-xds serve: not built yet\n');
  return 1;
}
