// Placeholder until the agent command lands (replaced in this session).
export async function agentCommand(_argv: string[]): Promise<number> {
  process.stderr.write('egress-xds agent: not built yet\n');
  return 1;
}
