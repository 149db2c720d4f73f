// node dist/bench/breakdownMain.js [microVMs] [names]: the listener's byte breakdown at one size.
import { compileEgress } from '../src/compile/index.js';
import { formatBreakdown, listenerBreakdown } from './listenerBreakdown.js';
import { hostPolicies } from './hostScenario.js';

const microVms = Number(process.argv[2] ?? 1000);
const names = Number(process.argv[3] ?? 20);
const compiled = compileEgress(hostPolicies(microVms, names));
console.log(`${microVms} × ${names}: ${formatBreakdown(listenerBreakdown(compiled))}`);
