// Shared by the replica tests: start a replica on an etcd, talk to its admin
// API, read what an Envoy-like client was given.
import { createLogger, silentLogger } from '../../src/log.js';
import { startControlPlane, type ControlPlane } from '../../src/server/controlPlane.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import type { FakeEnvoy } from '../support/fakeEnvoy.js';

export async function startReplica(endpoints: string, prefix: string, replicaId: string): Promise<ControlPlane> {
  return startControlPlane({
    xdsAddress: '127.0.0.1:0',
    adminHost: '127.0.0.1',
    adminPort: 0,
    dataDir: '/nonexistent-not-used-with-etcd',
    storeBackend: { kind: 'etcd', etcd: { endpoints: endpoints.split(','), prefix, callTimeoutMs: 2000, probeMs: 250 } },
    replicaId,
    // TEST_LOG=1 shows the replicas' logs (debug).
    logger: process.env.TEST_LOG ? createLogger({ level: 'debug', fields: { replica: replicaId } }) : silentLogger,
  });
}

export interface ApiReply {
  status: number;
  body: any;
}

export async function api(adminPort: number, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiReply> {
  const response = await fetch(`http://127.0.0.1:${adminPort}${path}`, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(20_000),
  });
  const text = await response.text();
  return { status: response.status, body: text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : text };
}

/** The server names the Listener allows (hardened: in filter_chain_matcher; seed: in chains). */
export function allowedNames(envoy: FakeEnvoy): string[] {
  const listener = envoy.state.get(TypeUrl.Listener)?.get('egress_tproxy') as { filterChainMatcher?: unknown; filterChains?: { filterChainMatch?: { serverNames?: string[] } }[] } | undefined;
  const inMatcher = [...JSON.stringify(listener?.filterChainMatcher ?? {}).matchAll(/"domains":\[([^\]]*)\]/g)].flatMap((m) => JSON.parse(`[${m[1]}]`) as string[]);
  return [...new Set([...inMatcher, ...(listener?.filterChains ?? []).flatMap((c) => c.filterChainMatch?.serverNames ?? [])])].sort();
}

/** Polls until the predicate holds; fails after timeoutMs. */
export async function until(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
