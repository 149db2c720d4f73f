// The young generation of the compile workers' heaps. bin/egress-xds gives the
// server a larger one (--max-semi-space-size, README "Allocator settings"): on
// the main thread a push to 10,000 streams allocates ~38 MiB of objects that
// live about as long as the push (HTTP/2 writes, ACKs); in V8's default 16 MiB
// semi-space they survive two scavenges, are promoted, and pile up in the old
// generation until a full collection (RSS grew ~5 MiB a push). V8 flags are
// per process, so every worker would get the larger young generation too,
// where it buys nothing: a compile's results outlive any scavenge. Measured
// (BENCHMARKS.md, "Fan-out: a young generation for the push"): 10,000 hosts'
// global change with the workers at 64 MiB semi-spaces, server RSS 1,265 MiB
// against 1,194 with them at the default (1,060 without the flag), and no less CPU. So before the first worker starts, the flag goes back to V8's
// default for the heaps created from then on; the main heap keeps its own.
import { setFlagsFromString } from 'node:v8';

let applied = false;

/** Call before creating a worker: workers get V8's default semi-space size, whatever the process was started with. */
export function defaultYoungGenerationForWorkers(execArgv: readonly string[] = process.execArgv): void {
  if (applied) return;
  applied = true;
  if (!execArgv.some((arg) => /^--max[-_]semi[-_]space[-_]size(=|$)/.test(arg))) return;
  // 0: V8 sizes the semi-space itself, as without the flag.
  setFlagsFromString('--max-semi-space-size=0');
}
