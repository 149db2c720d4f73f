// State of the world (StreamAggregatedResources), per resource type:
// a request opens a "watch"; a response closes it; the next request (ACK or
// NACK, echoing the response's nonce) opens it again. So at most one response
// per type is in flight, a newer version waiting meanwhile replaces any older
// one (the response is built from the snapshot when it goes out), a stale
// nonce changes nothing, a repeated request costs nothing, and a rejected
// version is never re-sent: only a newer version goes out.
//
// Listeners and Clusters are state of the world: every response carries the whole
// set (one buffer shared by every stream). Route tables are not: in SotW, RDS and EDS
// responses are incremental (xDS protocol, "Resource types"; Envoy's GrpcMuxImpl updates
// only the RDS watches whose resources a response carries, and an omitted table stays).
// So a stream is sent only the subscribed tables whose content differs from what it
// holds, plus newly subscribed ones that exist: a one-name edit of one microVM's policy
// sends one table, not the host's thousand (2 MB at 1,000 microVMs).
import type { DiscoveryRequest } from '../gen/envoy/service/discovery/v3/discovery_pb.js';
import { RESOURCE_TYPE_ORDER, TypeUrl, isWildcardResourceType } from '../envoy/typeUrls.js';
import { AdsStream } from './adsStream.js';
import type { ResourceSet } from '../snapshot/snapshot.js';
import { coversSet, decodeDiscoveryRequest, encodeSotwResponse, sharedSotwResponse } from './wire.js';

interface TypeState {
  /**
   * undefined: wildcard (every resource of the type), as Envoy asks for Listeners and
   * Clusters. Route tables are never wildcard: Envoy names the ones its listeners use.
   */
  names?: ReadonlySet<string>;
  watchOpen: boolean;
  /** Filled in place at each response (not an object per response: a push writes one per stream). */
  lastSent?: { version: string; nonce: string; names: ReadonlySet<string> | undefined };
  awaitingAnswer: boolean;
  /**
   * Named types only: what the client holds, name → resource version, as far as its
   * answers tell. A response's tables join it when it is ACKed; a NACKed response's do
   * not, so they are sent again with the next response (Envoy may have applied some of
   * them: re-sending an applied table is harmless, missing one is not).
   */
  held?: Map<string, string>;
  /** The tables of the response in flight (name → version): held once it is ACKed. */
  inFlight?: ReadonlyMap<string, string>;
  /**
   * Tables of a NACKed response, name → the rejected version: a table is not sent again at
   * a version the client rejected unless something else goes out with it; a newer version
   * goes out at once.
   */
  rejected?: Map<string, string>;
}

/**
 * A new subscription: a named table no longer subscribed is one Envoy dropped (its RDS
 * subscription ended), so it is no longer held, and is sent in full if asked for again.
 */
function setNames(state: TypeState, names: ReadonlySet<string> | undefined): void {
  state.names = names;
  if (!state.held || !names) return;
  for (const name of state.held.keys()) if (!names.has(name)) state.held.delete(name);
  for (const name of state.rejected!.keys()) if (!names.has(name)) state.rejected!.delete(name);
}

function sent(state: TypeState, version: string, nonce: string, names: ReadonlySet<string> | undefined): void {
  const last = state.lastSent;
  if (!last) {
    state.lastSent = { version, nonce, names };
    return;
  }
  last.version = version;
  last.nonce = nonce;
  last.names = names;
}

/** Whether any of `names` is in `items` (no array per flush). */
function someIn(names: ReadonlySet<string>, items: { has(name: string): boolean }): boolean {
  for (const name of names) if (items.has(name)) return true;
  return false;
}

const sameNames = (a: ReadonlySet<string> | undefined, b: ReadonlySet<string> | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && a.size === b.size && [...a].every((n) => b.has(n)));

/**
 * The names a request subscribes to; undefined for a wildcard subscription. Only Listeners
 * and Clusters have one (a request naming nothing, or "*"); for route tables a request
 * naming nothing unsubscribes from all of them (xDS protocol: "If the list of resource names
 * becomes empty, that means that the client is no longer interested in any resources").
 */
function subscribedNames(typeUrl: string, requested: readonly string[]): ReadonlySet<string> | undefined {
  if (isWildcardResourceType(typeUrl) && (requested.length === 0 || requested.includes('*'))) return undefined;
  return new Set(requested);
}

export class SotwStream extends AdsStream<DiscoveryRequest> {
  private readonly types = new Map<string, TypeState>();

  // A request repeated byte for byte changes nothing here: the same names, the same nonce
  // (a stale one is ignored, the current one answered already, an empty one compared with
  // what was sent last), the same NACK (recorded once).
  protected override readonly repeatsChangeNothing = true;

  protected override decode(bytes: Buffer): DiscoveryRequest {
    return decodeDiscoveryRequest(bytes);
  }

  protected override onRequest(request: DiscoveryRequest): void {
    const typeUrl = request.typeUrl;
    if (!this.serves(typeUrl)) return;
    const names = subscribedNames(typeUrl, request.resourceNames);
    const state = this.types.get(typeUrl);
    if (!state) {
      // A first request: it is owed the current state at once.
      this.types.set(typeUrl, !isWildcardResourceType(typeUrl) ? { names, watchOpen: true, awaitingAnswer: false, held: new Map(), rejected: new Map() } : { names, watchOpen: true, awaitingAnswer: false });
      this.flush(typeUrl);
      return;
    }
    if (request.responseNonce === '') {
      // The same subscription again without a nonce (a client repeating its first request): the
      // names may change, but a response in flight stays the only one, and an unchanged
      // subscription is not answered twice (flush compares with what was sent last).
      setNames(state, names);
      if (!state.awaitingAnswer) this.flush(typeUrl);
      return;
    }
    if (request.responseNonce !== state.lastSent?.nonce) {
      const superseded = this.versionOfNonce(request.responseNonce);
      if (request.errorDetail && superseded !== undefined) this.recordNack(typeUrl, superseded, AdsStream.nackMessage(request.errorDetail), true);
      else this.logger.debug('stale nonce ignored', { typeUrl, nonce: request.responseNonce });
      return;
    }
    setNames(state, names);
    if (!state.awaitingAnswer) {
      // The answered response answered again: only a change of names can matter.
      this.flush(typeUrl);
      return;
    }
    const answered = state.lastSent;
    state.awaitingAnswer = false;
    state.watchOpen = true;
    if (request.errorDetail) {
      if (state.inFlight && state.rejected) for (const [name, version] of state.inFlight) state.rejected.set(name, version);
      this.recordNack(typeUrl, answered.version, AdsStream.nackMessage(request.errorDetail));
    } else {
      if (state.inFlight && state.held) {
        // Only names still subscribed: a table unsubscribed meanwhile is one Envoy dropped.
        for (const [name, version] of state.inFlight) {
          state.rejected?.delete(name);
          if (state.names?.has(name)) state.held.set(name, version);
        }
      }
      this.recordAck(typeUrl, request.versionInfo);
    }
    state.inFlight = undefined;
    // The answer opened this type's watch only, so only this type can owe a response now, plus
    // a Listener held back while its Clusters were in flight (flushAll's order: Clusters first).
    // Not flushAll: every ACK of a push asked every subscribed type again.
    this.flushState(typeUrl, state);
    if (typeUrl === TypeUrl.Cluster && this.subscribed(TypeUrl.Listener)) this.flush(TypeUrl.Listener);
  }

  /**
   * Clusters first, then the listener: each subscribed type's state looked up once (the base
   * class asks subscribed() and then flush() looks the state up again: three lookups per
   * stream and push for nothing, in the push profile).
   */
  protected override flushAll(): void {
    for (const typeUrl of RESOURCE_TYPE_ORDER) {
      const state = this.types.get(typeUrl);
      if (state) this.flushState(typeUrl, state);
    }
  }

  protected override flush(typeUrl: string): void {
    const state = this.types.get(typeUrl);
    if (state) this.flushState(typeUrl, state);
  }

  private flushState(typeUrl: string, state: TypeState): void {
    const set = this.snapshot?.resourceSet(typeUrl);
    // Never an empty state-of-the-world by mistake: Envoy would delete everything missing.
    if (!state.watchOpen || !set || set.items.size === 0) return;
    if (state.held) {
      this.flushChanged(typeUrl, state, set);
      return;
    }
    // Also what keeps a NACKed version from being re-sent: it is the last one sent.
    const last = state.lastSent;
    if (last && last.version === set.version && sameNames(last.names, state.names)) return;
    if (this.mustWaitForClusters(typeUrl)) return;
    // Named resources none of which exist (or no names at all): nothing to send. The watch
    // stays open, so a named resource that appears later is sent (xDS protocol, "Knowing
    // When a Requested Resource Does Not Exist"); Envoy's warming timeout covers the rest.
    if (state.names && !someIn(state.names, set.items)) return;
    // Wildcard (what Envoy asks for Listeners and Clusters), or names covering the whole set
    // (what Envoy asks for the route tables its listener names): the one buffer every stream is sent.
    this.send(typeUrl, state, set, state.names && !coversSet(state.names, set) ? state.names : undefined);
  }

  /**
   * A named type (route tables): the subscribed tables whose version differs from the one the
   * client holds, all of them in one response. version_info is the snapshot's version of the
   * whole type, which still identifies the state: once the response is ACKed, the client holds
   * that version of every subscribed table that exists in it (the others it already held).
   */
  private flushChanged(typeUrl: string, state: TypeState, set: ResourceSet): void {
    const held = state.held!;
    const rejected = state.rejected!;
    const names = state.names!;
    // The tables to send, name → version: the response's tables in flight once it is sent.
    const changed = new Map<string, string>();
    let anythingNew = false;
    for (const name of names) {
      const resource = set.items.get(name);
      if (!resource || held.get(name) === resource.version) continue;
      changed.set(name, resource.version);
      // A version the client rejected goes out again only beside something it has not seen.
      if (rejected.get(name) !== resource.version) anythingNew = true;
    }
    // Nothing new for this stream, but the type's version moved on (a table it does not hold
    // changed, appeared or went): a response with no table carries the new version, so the
    // node's acknowledged version still says it runs the latest state (what the registry and
    // its callers compare). Envoy takes it as an update of no subscription and ACKs it (its
    // GrpcMuxImpl calls no RDS watch for it). Not before the first response: names none of
    // which exist wait for their tables.
    const versionMoved = state.lastSent !== undefined && state.lastSent.version !== set.version;
    if (!anythingNew && !versionMoved) return;
    // Every table of the set (a first response, a global change): the buffer every stream is sent.
    this.send(typeUrl, state, set, changed.size === set.items.size ? undefined : changed);
    state.inFlight = changed;
  }

  /**
   * Sends the set, or only the resources `only` names (a response of this stream's own,
   * with its own nonce), and waits for the answer.
   */
  private send(typeUrl: string, state: TypeState, set: ResourceSet, only: { has(name: string): boolean } | undefined): void {
    let nonce: string;
    let bytes: Buffer;
    let framed: Buffer;
    if (only) {
      nonce = this.nextNonce();
      ({ bytes, framed } = encodeSotwResponse(typeUrl, set, nonce, only));
    } else {
      ({ nonce, bytes, framed } = sharedSotwResponse(typeUrl, set));
    }
    sent(state, set.version, nonce, state.names);
    state.watchOpen = false;
    state.awaitingAnswer = true;
    this.write(typeUrl, set.version, nonce, bytes, framed);
  }

  protected override subscribed(typeUrl: string): boolean {
    return this.types.has(typeUrl);
  }

  protected override awaitingAnswer(typeUrl: string): boolean {
    return this.types.get(typeUrl)?.awaitingAnswer ?? false;
  }
}
