// An Envoy-like client that fails over between control-plane replicas the way
// Envoy does with an xDS cluster of several endpoints: its gRPC channel has
// every endpoint (grpc-js "ipv4:A,B" target, pick_first: the first that
// accepts), and when the ADS stream ends it opens a new one, on a fresh
// channel, to whichever endpoint accepts, announcing the versions it holds.
import { FakeEnvoy, type FakeEnvoyOptions } from './fakeEnvoy.js';

/** The grpc-js target for the endpoints of a bootstrap's xds_cluster. */
export function targetOf(endpoints: readonly { host: string; port: number }[]): string {
  return `ipv4:${endpoints.map((e) => `${e.host}:${e.port}`).join(',')}`;
}

export class FailoverEnvoy {
  current: FakeEnvoy;
  /** How many streams were opened (1 + failovers). */
  streams = 0;
  private closed = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly target: string,
    private readonly options: FakeEnvoyOptions,
  ) {
    this.current = this.open();
    this.timer = setInterval(() => {
      // The stream ended (the replica died): reconnect, keeping what was accepted.
      if (this.closed || this.current.status === undefined) return;
      const versions = Object.fromEntries(this.current.acceptedVersions);
      this.current.close();
      this.current = this.open(versions);
    }, 50);
  }

  private open(initialVersions?: Record<string, string>): FakeEnvoy {
    this.streams++;
    return new FakeEnvoy(this.target, { ...this.options, ...(initialVersions ? { initialVersions } : {}) }).connect();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.current.close();
  }
}
