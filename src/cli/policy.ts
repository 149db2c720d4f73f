// Placeholder until the policy command lands (replaced in this session).
export async function policyCommand(_argv: string[]): Promise<number> {
  process.stderr.write('egress-xds policy: not built yet\n');
  return 1;
}
