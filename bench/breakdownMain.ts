// node dist/bench/breakdownMain.js [microVMs] [names] [maxConnectionsPerSource]: the listener's
// byte breakdown at one size (cap 0: no Envoy-side cap, shared forwarding chains).
import { compileEgress } from '../src/compile/index.js';
import { formatBreakdown, listenerBreakdown } from './listenerBreakdown.js';
import { hostPolicies } from './hostScenario.js';

const microVms = Number(process.argv[2] ?? 1000);
const names = Number(process.argv[3] ?? 20);
const cap = process.argv[4] === undefined ? undefined : Number(process.argv[4]);
const compiled = compileEgress(hostPolicies(microVms, names), cap === undefined ? {} : { maxConnectionsPerSource: cap });
console.log(`${microVms} × ${names}${cap === undefined ? '' : ` (cap ${cap})`}: ${formatBreakdown(listenerBreakdown(compiled))}`);
