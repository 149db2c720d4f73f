// The host scenarios of issue 7 with serve --max-connections-per-source 0 (no Envoy-side cap,
// the forwarding chains shared: src/compile/chainSources.ts) beside the default cap (512).
// node dist/bench/sharedChains.js [rounds] [sizes, comma-separated]
import { pathToFileURL } from 'node:url';
import { loadavg } from 'node:os';
import { DEFAULT_MAX_CONNECTIONS_PER_SOURCE } from '../src/compile/names.js';
import { hostScenarioTable } from './hostScenario.js';
import { rerunWithShippedEnv, shippedEnvLine } from './shippedEnv.js';

export async function sharedChainsTables(sizes: readonly number[], rounds: number): Promise<string[]> {
  const lines: string[] = [];
  for (const cap of [DEFAULT_MAX_CONNECTIONS_PER_SOURCE, 0]) {
    lines.push('', `--max-connections-per-source ${cap}${cap === 0 ? ' (no connection_limit; shared name|* and original_dst|* chains)' : ' (the default: a capped chain per source)'}:`, '');
    lines.push(...(await hostScenarioTable(sizes, rounds, { maxConnectionsPerSource: cap })));
  }
  return lines;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  // Under bin/egress-xds's allocator settings, as npm run bench measures.
  rerunWithShippedEnv();
  console.log(shippedEnvLine(process.env));
  const rounds = Number(process.argv[2] ?? 8);
  const sizes = (process.argv[3] ?? '50,200,1000').split(',').map(Number);
  console.log(`load average before: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  for (const line of await sharedChainsTables(sizes, rounds)) console.log(line);
  console.log(`\nload average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
}
