// Incremental xDS (DeltaAggregatedResources), per resource type: the stream
// tracks the version of each resource the client holds and sends only what
// differs, plus the names of resources that are gone. As in state of the
// world, at most one response per type is unanswered: changes and
// subscription changes made meanwhile are folded into the next response,
// computed from the latest snapshot when the answer comes (a slow client gets
// the latest state, never a queue). Subscription changes apply whatever nonce
// they carry. Per Envoy's xDS protocol document:
// - a subscription to a resource the client already holds is answered with it
//   (a client re-subscribes to be sent it again);
// - a name subscribed to that does not exist is reported in removed_resources
//   (once, until it is subscribed to again), so the client need not wait out
//   its timeout; if it appears later it is sent;
// - a NACK of a superseded response is recorded like any NACK.
import type { DeltaDiscoveryRequest } from '../gen/envoy/service/discovery/v3/discovery_pb.js';
import type { EncodedResource } from '../snapshot/encodedResource.js';
import { isWildcardResourceType } from '../envoy/typeUrls.js';
import { AdsStream } from './adsStream.js';
import { decodeDeltaDiscoveryRequest, encodeDeltaResponse } from './wire.js';

interface DeltaTypeState {
  wildcard: boolean;
  readonly names: Set<string>;
  /** What the client holds, name → version (optimistic: updated when sent; a NACK keeps the client's old one, and it is not re-sent until the resource changes again). */
  readonly clientVersions: Map<string, string>;
  /** Held resources the client subscribed to again: sent again even though unchanged. */
  readonly resend: Set<string>;
  /** Subscribed names already reported missing in removed_resources. */
  readonly reportedMissing: Set<string>;
  /** The unanswered response, if any. */
  pending?: { readonly nonce: string; readonly version: string };
}

const NO_ITEMS: ReadonlyMap<string, EncodedResource> = new Map();

export class DeltaStream extends AdsStream<DeltaDiscoveryRequest> {
  private readonly types = new Map<string, DeltaTypeState>();

  protected override readonly repeatsChangeNothing = false;

  protected override decode(bytes: Buffer): DeltaDiscoveryRequest {
    return decodeDeltaDiscoveryRequest(bytes);
  }

  protected override onRequest(request: DeltaDiscoveryRequest): void {
    const typeUrl = request.typeUrl;
    if (!this.serves(typeUrl)) return;
    let state = this.types.get(typeUrl);
    if (!state) {
      const subscribe = request.resourceNamesSubscribe;
      state = {
        // Legacy wildcard: a first request naming nothing subscribes to everything, for the
        // types that have a wildcard (Listeners, Clusters); route tables are asked for by name.
        wildcard: subscribe.includes('*') || (subscribe.length === 0 && isWildcardResourceType(typeUrl)),
        names: new Set(subscribe.filter((n) => n !== '*')),
        clientVersions: new Map(Object.entries(request.initialResourceVersions)),
        resend: new Set(),
        reportedMissing: new Set(),
      };
      this.types.set(typeUrl, state);
    } else {
      this.answer(typeUrl, state, request);
      for (const name of request.resourceNamesSubscribe) {
        if (name === '*') {
          state.wildcard = true;
          continue;
        }
        state.names.add(name);
        state.reportedMissing.delete(name);
        if (state.clientVersions.has(name)) state.resend.add(name);
      }
      for (const name of request.resourceNamesUnsubscribe) {
        if (name === '*') {
          state.wildcard = false;
          for (const held of state.clientVersions.keys()) if (!state.names.has(held)) state.clientVersions.delete(held);
        } else {
          state.names.delete(name);
          state.clientVersions.delete(name);
          state.resend.delete(name);
          state.reportedMissing.delete(name);
        }
      }
    }
    this.flushAll();
  }

  private answer(typeUrl: string, state: DeltaTypeState, request: DeltaDiscoveryRequest): void {
    if (request.responseNonce === '') return;
    if (request.responseNonce !== state.pending?.nonce) {
      const superseded = this.versionOfNonce(request.responseNonce);
      if (request.errorDetail && superseded !== undefined) this.recordNack(typeUrl, superseded, AdsStream.nackMessage(request.errorDetail), true);
      else this.logger.debug('stale nonce ignored', { typeUrl, nonce: request.responseNonce });
      return;
    }
    const { version } = state.pending;
    delete state.pending;
    if (request.errorDetail) this.recordNack(typeUrl, version, AdsStream.nackMessage(request.errorDetail));
    else this.recordAck(typeUrl, version);
  }

  protected override flush(typeUrl: string): void {
    const state = this.types.get(typeUrl);
    if (!state || state.pending || !this.snapshot || this.mustWaitForClusters(typeUrl)) return;
    const set = this.snapshot.resourceSet(typeUrl);
    const items = set?.items ?? NO_ITEMS;
    const subscribed = (name: string) => state.wildcard || state.names.has(name);
    const updated: EncodedResource[] = [];
    for (const resource of items.values()) {
      if (!subscribed(resource.name)) continue;
      if (state.clientVersions.get(resource.name) !== resource.version || state.resend.has(resource.name)) updated.push(resource);
    }
    const removed: string[] = [];
    for (const name of state.clientVersions.keys()) if (!items.has(name)) removed.push(name);
    for (const name of state.names) {
      if (!items.has(name) && !state.clientVersions.has(name) && !state.reportedMissing.has(name)) removed.push(name);
    }
    state.resend.clear();
    if (updated.length === 0 && removed.length === 0) return;
    for (const resource of updated) {
      state.clientVersions.set(resource.name, resource.version);
      state.reportedMissing.delete(resource.name);
    }
    for (const name of removed) {
      state.clientVersions.delete(name);
      if (state.names.has(name)) state.reportedMissing.add(name);
    }
    const version = set?.version ?? '';
    const nonce = this.nextNonce();
    state.pending = { nonce, version };
    const { bytes, framed } = encodeDeltaResponse({ typeUrl, systemVersion: version, resources: updated, removed, nonce });
    this.write(typeUrl, version, nonce, bytes, framed);
  }

  protected override subscribed(typeUrl: string): boolean {
    return this.types.has(typeUrl);
  }

  protected override awaitingAnswer(typeUrl: string): boolean {
    return this.types.get(typeUrl)?.pending !== undefined;
  }
}
