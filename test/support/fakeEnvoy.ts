// A grpc-js ADS client that behaves like Envoy: it subscribes to Clusters,
// then to Listeners once Clusters arrived, then to the route tables (RDS) its
// listeners' HTTP connection managers name, by name, following every listener
// update (as Envoy's RdsRouteConfigSubscription does); ACKs every response (or NACKs the
// ones it is told to reject), echoing nonces; and decodes every response and
// resource strictly with Envoy's protos: an unknown field fails the test.
// Its decoding path (proto-loader/protobufjs) is independent of the server's.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { decodeStrictLeavingAny, decodeStrictToJson, type ProtoJson } from '../../src/envoy/codec.js';
import { envoyProtoIncludeDirs } from '../../src/envoy/protos.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';

const DISCOVERY_RESPONSE = 'type.googleapis.com/envoy.service.discovery.v3.DiscoveryResponse';
const DELTA_DISCOVERY_RESPONSE = 'type.googleapis.com/envoy.service.discovery.v3.DeltaDiscoveryResponse';

type ServiceClient = grpc.Client & {
  StreamAggregatedResources(): grpc.ClientDuplexStream<unknown, RawResponse>;
  DeltaAggregatedResources(): grpc.ClientDuplexStream<unknown, RawResponse>;
};

interface RawResponse {
  version_info?: string;
  system_version_info?: string;
  type_url: string;
  nonce: string;
  resources: ({ type_url: string; value: Buffer } | { name: string; version: string; resource: { type_url: string; value: Buffer } })[];
  removed_resources?: string[];
  /** Set by the deserializer: the encoded DiscoveryResponse's size. */
  byteLength?: number;
  /** Set by the deserializer: each resource decoded strictly to ProtoJSON, in order. */
  decoded?: ProtoJson[];
}

export interface ReceivedResponse {
  readonly typeUrl: string;
  readonly version: string;
  readonly nonce: string;
  readonly resources: ReadonlyMap<string, ProtoJson>;
  readonly removed: readonly string[];
  /** When the response arrived (before decoding). */
  readonly at: bigint;
  /** The encoded DiscoveryResponse's size in bytes (without gRPC's 5-byte prefix). */
  readonly bytes: number;
}

let clientConstructor: (new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => ServiceClient) | undefined;

function adsClientConstructor() {
  if (clientConstructor) return clientConstructor;
  const definition = protoLoader.loadSync('envoy/service/discovery/v3/ads.proto', {
    includeDirs: envoyProtoIncludeDirs(),
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    arrays: true,
  });
  const service = { ...(definition['envoy.service.discovery.v3.AggregatedDiscoveryService'] as grpc.ServiceDefinition) } as Record<string, grpc.MethodDefinition<unknown, unknown>>;
  for (const [method, responseType] of [
    ['StreamAggregatedResources', DISCOVERY_RESPONSE],
    ['DeltaAggregatedResources', DELTA_DISCOVERY_RESPONSE],
  ] as const) {
    const original = service[method]!;
    const lenient = original.responseDeserialize;
    service[method] = {
      ...original,
      // Strict at every depth, as Envoy decodes: the response without its resources' values,
      // then each resource's value (an Any) strictly to ProtoJSON. A failure of either fails the
      // stream, as it did when the whole response was decoded strictly first (which decoded
      // every resource twice: half of this client's CPU, BENCHMARKS.md hostile mix).
      responseDeserialize: (bytes: Buffer) => {
        decodeStrictLeavingAny(responseType, bytes);
        const raw = lenient(bytes) as RawResponse;
        raw.byteLength = bytes.length;
        raw.decoded = raw.resources.map((item) => {
          const any = 'resource' in item ? item.resource : item;
          return decodeStrictToJson(any.type_url, any.value);
        });
        return raw;
      },
    };
  }
  clientConstructor = grpc.makeGenericClientConstructor(service as grpc.ServiceDefinition, 'AggregatedDiscoveryService') as unknown as typeof clientConstructor;
  return clientConstructor!;
}

export interface FakeEnvoyOptions {
  readonly nodeId: string;
  readonly cluster?: string;
  readonly variant?: 'sotw' | 'delta';
  /** SotW: the version to announce on the first requests (as an Envoy reconnecting with config does). */
  readonly initialVersions?: Partial<Record<string, string>>;
  /** Delta: the resources (name → version) announced on the first request of a type. */
  readonly initialResourceVersions?: Partial<Record<string, Record<string, string>>>;
  /** Default: plaintext. */
  readonly credentials?: grpc.ChannelCredentials;
}

export class FakeEnvoy {
  readonly responses: ReceivedResponse[] = [];
  readonly errors: Error[] = [];
  /** What Envoy holds now per type: name → resource ProtoJSON. */
  readonly state = new Map<string, Map<string, ProtoJson>>();
  /** The version Envoy accepted last, per type. */
  readonly acceptedVersions = new Map<string, string>();
  private readonly rejectNext = new Map<string, string>();
  private readonly client: ServiceClient;
  private stream?: grpc.ClientDuplexStream<unknown, RawResponse>;
  private readonly waiters = new Set<() => void>();
  status?: grpc.StatusObject;

  constructor(
    address: string,
    private readonly options: FakeEnvoyOptions,
  ) {
    const Client = adsClientConstructor();
    // A connection of its own, as every Envoy has: grpc-js otherwise pools one connection for all
    // clients of the same address, and past the server's streams per connection (100) the
    // streams of the 101st and later fake Envoys would wait for a place that never frees.
    this.client = new Client(address, options.credentials ?? grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  }

  private get node() {
    return { id: this.options.nodeId, cluster: this.options.cluster ?? 'test-cluster' };
  }

  connect(): this {
    const delta = this.options.variant === 'delta';
    const stream = delta ? this.client.DeltaAggregatedResources() : this.client.StreamAggregatedResources();
    this.stream = stream;
    stream.on('data', (raw: RawResponse) => this.onResponse(raw));
    stream.on('error', (error: Error) => {
      this.errors.push(error);
      this.notify();
    });
    stream.on('status', (status: grpc.StatusObject) => {
      this.status = status;
      this.notify();
    });
    this.subscribe(TypeUrl.Cluster);
    return this;
  }

  /** Sends a raw request on the stream (for protocol edge cases). */
  send(request: Record<string, unknown>): void {
    this.stream!.write(request);
  }

  subscribe(typeUrl: string): void {
    if (this.options.variant === 'delta') {
      const initial = this.options.initialResourceVersions?.[typeUrl] ?? {};
      this.send({ node: this.node, type_url: typeUrl, resource_names_subscribe: [], initial_resource_versions: initial });
    } else {
      this.send({ node: this.node, type_url: typeUrl, version_info: this.options.initialVersions?.[typeUrl] ?? '', resource_names: [], response_nonce: '' });
    }
  }

  /** The next response of this type is rejected with this message. */
  rejectNextResponse(typeUrl: string, message: string): void {
    this.rejectNext.set(typeUrl, message);
  }

  private readonly heldTypes = new Set<string>();
  private readonly heldResponses: { raw: RawResponse; response: ReceivedResponse }[] = [];

  /** Responses of this type are recorded but not answered (no ACK, no NACK) until releaseAnswers: a slow Envoy. */
  holdAnswers(typeUrl: string): void {
    this.heldTypes.add(typeUrl);
  }

  /** Answers the held responses of this type in order, and answers the next ones at once again. */
  releaseAnswers(typeUrl: string): void {
    this.heldTypes.delete(typeUrl);
    const held = this.heldResponses.filter((h) => h.raw.type_url === typeUrl);
    this.heldResponses.splice(0, this.heldResponses.length, ...this.heldResponses.filter((h) => h.raw.type_url !== typeUrl));
    for (const { raw, response } of held) this.answer(raw, response);
    this.notify();
  }

  private onResponse(raw: RawResponse): void {
    const at = process.hrtime.bigint();
    const delta = this.options.variant === 'delta';
    const resources = new Map<string, ProtoJson>();
    for (const [i, item] of raw.resources.entries()) {
      const any = 'resource' in item ? item.resource : item;
      if (any.type_url !== raw.type_url) throw new Error(`resource of type ${any.type_url} in a ${raw.type_url} response`);
      const json = raw.decoded?.[i] ?? decodeStrictToJson(any.type_url, any.value);
      const name = 'name' in item ? item.name : String(json.name);
      if (resources.has(name)) this.errors.push(new Error(`duplicate resource "${name}" in one response`));
      resources.set(name, json);
    }
    const version = (delta ? raw.system_version_info : raw.version_info) ?? '';
    const response: ReceivedResponse = {
      typeUrl: raw.type_url,
      version,
      nonce: raw.nonce,
      resources,
      removed: raw.removed_resources ?? [],
      at,
      bytes: raw.byteLength ?? 0,
    };
    this.responses.push(response);
    if (this.heldTypes.has(raw.type_url)) this.heldResponses.push({ raw, response });
    else this.answer(raw, response);
    this.notify();
  }

  private answer(raw: RawResponse, response: ReceivedResponse): void {
    const delta = this.options.variant === 'delta';
    const { version, resources } = response;
    const rejection = this.rejectNext.get(raw.type_url);
    if (rejection !== undefined) {
      this.rejectNext.delete(raw.type_url);
      const errorDetail = { code: grpc.status.INVALID_ARGUMENT, message: rejection };
      if (delta) this.send({ node: this.node, type_url: raw.type_url, response_nonce: raw.nonce, error_detail: errorDetail });
      else this.send({ node: this.node, type_url: raw.type_url, version_info: this.acceptedVersions.get(raw.type_url) ?? '', resource_names: this.namesOf(raw.type_url), response_nonce: raw.nonce, error_detail: errorDetail });
    } else {
      // Route tables are kept one by one (SotW too: a response without one does not delete it).
      // As Envoy's GrpcMuxImpl: in SotW an RDS response updates only the subscriptions whose
      // tables it carries; Listeners and Clusters are replaced whole.
      const routes = raw.type_url === TypeUrl.RouteConfiguration;
      const held = delta || routes ? new Map(this.state.get(raw.type_url) ?? []) : new Map<string, ProtoJson>();
      for (const [name, json] of resources) if (!routes || this.routeNames.has(name)) held.set(name, json);
      for (const name of response.removed) held.delete(name);
      this.state.set(raw.type_url, held);
      this.acceptedVersions.set(raw.type_url, version);
      if (routes) this.routeNonce = raw.nonce;
      if (delta) this.send({ node: this.node, type_url: raw.type_url, response_nonce: raw.nonce });
      else this.send({ node: this.node, type_url: raw.type_url, version_info: version, resource_names: this.namesOf(raw.type_url), response_nonce: raw.nonce });
      if (raw.type_url === TypeUrl.Listener) this.followRouteNames();
      // Envoy asks for Listeners once its Clusters are in.
      if (raw.type_url === TypeUrl.Cluster && !this.state.has(TypeUrl.Listener) && !this.listenerRequested) {
        this.listenerRequested = true;
        this.subscribe(TypeUrl.Listener);
      }
    }
  }

  private listenerRequested = false;
  /** The route tables subscribed to (RDS): those the held listeners name. */
  readonly routeNames = new Set<string>();
  private routeNonce = '';
  private routesRequested = false;

  /** True once it holds a listener and every route table its listeners name (what Envoy needs to serve). */
  configured(): boolean {
    const held = this.state.get(TypeUrl.RouteConfiguration);
    return this.state.has(TypeUrl.Listener) && [...this.routeNames].every((name) => held?.has(name) === true);
  }

  /** What a SotW request of the type names: nothing for the wildcard types, the subscribed route names for RDS. */
  private namesOf(typeUrl: string): string[] {
    return typeUrl === TypeUrl.RouteConfiguration ? [...this.routeNames].sort() : [];
  }

  /** Subscribes to the route tables the held listeners name, and unsubscribes from the others. */
  private followRouteNames(): void {
    const wanted = new Set<string>();
    for (const listener of this.state.get(TypeUrl.Listener)?.values() ?? []) for (const name of rdsNamesOf(listener)) wanted.add(name);
    const added = [...wanted].filter((n) => !this.routeNames.has(n)).sort();
    const removed = [...this.routeNames].filter((n) => !wanted.has(n)).sort();
    if (added.length === 0 && removed.length === 0) return;
    for (const name of removed) {
      this.routeNames.delete(name);
      this.state.get(TypeUrl.RouteConfiguration)?.delete(name);
    }
    for (const name of added) this.routeNames.add(name);
    const first = !this.routesRequested;
    this.routesRequested = true;
    if (this.options.variant === 'delta') {
      this.send({ node: this.node, type_url: TypeUrl.RouteConfiguration, resource_names_subscribe: added, resource_names_unsubscribe: first ? [] : removed });
    } else {
      const t = TypeUrl.RouteConfiguration;
      this.send({ node: this.node, type_url: t, version_info: this.acceptedVersions.get(t) ?? '', resource_names: this.namesOf(t), response_nonce: this.routeNonce });
    }
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /**
   * Resolves when the predicate holds (checked on every event and every 10 ms, for server-side
   * state); rejects after the timeout. With `{ poll: false }` it is checked on this Envoy's
   * events only (a response, an error, the status, released answers): for a predicate on what
   * the Envoy holds, which nothing else changes, that is exact, and a costly predicate is not
   * run 100 times a second (bench/hostileMix.ts waits on ten Envoys at once).
   */
  // The default bound is generous: it only ends a wait for what must happen (no test expects a
  // timeout), and a loaded machine (CI beside other jobs) can take seconds to start a server.
  waitFor(description: string, predicate: () => boolean, timeoutMs = 20_000, options: { readonly poll?: boolean } = {}): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!predicate()) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${description}; responses: ${this.responses.map((r) => `${r.typeUrl.split('.').pop()}@${r.version}`).join(', ')}; errors: ${this.errors.map((e) => e.message).join('; ')}`));
      }, timeoutMs);
      const poll = options.poll === false ? undefined : setInterval(check, 10);
      const cleanup = () => {
        clearTimeout(timer);
        if (poll) clearInterval(poll);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
    });
  }

  responsesOf(typeUrl: string): ReceivedResponse[] {
    return this.responses.filter((r) => r.typeUrl === typeUrl);
  }

  close(): void {
    this.stream?.cancel();
    this.client.close();
  }
}

/** The route_config_name of every HTTP connection manager with rds in a listener (ProtoJSON, Any values decoded). */
export function rdsNamesOf(listener: ProtoJson): string[] {
  const names: string[] = [];
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) for (const v of value) visit(v);
    else if (typeof value === 'object' && value !== null) {
      const record = value as Record<string, unknown>;
      const rds = record['rds'] as { routeConfigName?: string } | undefined;
      if (record['@type'] === TypeUrl.HttpConnectionManager && rds?.routeConfigName) names.push(rds.routeConfigName);
      for (const v of Object.values(record)) visit(v);
    }
  };
  visit(listener);
  return names;
}

/** Resolves after ms; for proving that nothing more arrives in a quiet period. */
export const settle = (ms = 150): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
