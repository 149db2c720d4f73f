// The hostile clients of bench/hostileMix.ts: 100 streams that never read
// (each holding a listener in the server's HTTP/2 buffers until reset),
// clients that repeat their first request 1,500 times, Delta clients that
// toggle a subscription 1,000 times. In a fleet these are other machines: their
// CPU is not the control plane's, nor the healthy Envoys'. So by default they
// run here, in a process of their own at a lower priority (nice +10 over the
// driver), and what the healthy Envoys see is what the hostile clients cost the
// server, not what they cost the machine the driver shares with it.
// `hostileMixTable({ ..., hostileIn: 'driver' })` runs the same clients in the
// driver, as before, for comparison.
//
// Driven over IPC: {start: HostileClientsSpec} (answered once every request is
// handed to HTTP/2), {status} (stuck streams reset? CPU µs), {stop}.
import { getPriority, setPriority } from 'node:os';
import { TypeUrl } from '../src/envoy/typeUrls.js';
import { RawAdsConnection, deltaRequest, sotwRequest, type RawStream } from '../test/support/rawAdsClient.js';

const LDS = TypeUrl.Listener;
const CDS = TypeUrl.Cluster;

export interface HostileClientsSpec {
  readonly address: string;
  readonly stuck: number;
  /** Clients repeating their first request (SotW), and as many toggling a subscription (Delta). */
  readonly flooders: number;
  readonly floodRequests: number;
  readonly toggles: number;
}

export type HostileClientsCommand = { start: HostileClientsSpec } | { status: true } | { stop: true };

export interface HostileClientsStatus {
  readonly stuckReset: boolean;
  readonly cpuMicros: number;
}

/** Opens the hostile clients (also used in the driver's own process, hostileIn: 'driver'). */
export class HostileClients {
  private readonly connections: RawAdsConnection[] = [];
  private readonly stuck: RawStream[] = [];

  constructor(spec: HostileClientsSpec) {
    const { address } = spec;
    for (let i = 0; i < spec.stuck; i++) {
      const connection = new RawAdsConnection(address);
      this.connections.push(connection);
      const s = connection.open('sotw', { read: false });
      // Listeners first: the server sends the listener at once (nothing to wait for), larger
      // than HTTP/2's 64 KiB window, so it stays in the server's buffers, then the clusters
      // behind it. Asked the other way round (as Envoy asks), the small cluster response fits
      // in the window and the listener waits for its ACK: nothing stuck, nothing held.
      s.stream.write(sotwRequest({ node: { id: `stuck-${i}` }, typeUrl: LDS }));
      s.stream.write(sotwRequest({ node: { id: `stuck-${i}` }, typeUrl: CDS }));
      this.stuck.push(s);
      void s.ended.then(() => (this.ended += 1));
    }
    for (let f = 0; f < spec.flooders; f++) {
      const connection = new RawAdsConnection(address);
      this.connections.push(connection);
      const s = connection.open('sotw', { read: true });
      for (let i = 0; i < spec.floodRequests; i++) s.stream.write(sotwRequest({ node: { id: `flood-${f}` }, typeUrl: CDS }));
      const t = connection.open('delta', { read: true });
      t.stream.write(deltaRequest({ node: { id: `toggle-${f}` }, typeUrl: CDS }));
      for (let i = 0; i < spec.toggles / 2; i++) {
        t.stream.write(deltaRequest({ typeUrl: CDS, resourceNamesUnsubscribe: ['original_dst_cluster'] }));
        t.stream.write(deltaRequest({ typeUrl: CDS, resourceNamesSubscribe: ['original_dst_cluster'] }));
      }
    }
  }

  private ended = 0;

  /** Every stuck stream was closed by the server, and not with OK. */
  stuckReset(): boolean {
    return this.ended === this.stuck.length && this.stuck.every((s) => s.status() !== 0);
  }

  close(): void {
    for (const c of this.connections) c.close();
  }
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  // Below the driver: the hostile clients take what CPU is left over.
  setPriority(Math.min(19, getPriority() + 10));
  let clients: HostileClients | undefined;
  process.on('message', (command: HostileClientsCommand) => {
    try {
      if ('start' in command) {
        clients = new HostileClients(command.start);
        process.send!({ started: true });
      } else if ('status' in command) {
        const cpu = process.cpuUsage();
        process.send!({ stuckReset: clients?.stuckReset() ?? false, cpuMicros: cpu.user + cpu.system } satisfies HostileClientsStatus);
      } else {
        clients?.close();
        process.exit(0);
      }
    } catch (error) {
      process.send!({ error: String(error) });
    }
  });
  process.send!({ ready: true });
}
