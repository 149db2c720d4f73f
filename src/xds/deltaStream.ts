// Incremental xDS (DeltaAggregatedResources), per resource type: the stream
// tracks the version of each resource the client holds and sends only what
// differs, plus the names of resources that are gone. ACK/NACK and stale
// nonces are handled as in state of the world; subscription changes apply
// whatever nonce they carry.
import type { DeltaDiscoveryRequest } from '../gen/envoy/service/discovery/v3/discovery_pb.js';
import type { EncodedResource } from '../snapshot/encodedResource.js';
import { AdsStream } from './adsStream.js';
import { encodeDeltaResponse } from './wire.js';

interface DeltaTypeState {
  wildcard: boolean;
  readonly names: Set<string>;
  /** What the client holds, name → version (optimistic: updated when sent; a NACK keeps the client's old one, and it is not re-sent until the resource changes again). */
  readonly clientVersions: Map<string, string>;
  /** The unanswered response, if any. */
  pending?: { readonly nonce: string; readonly version: string };
}

export class DeltaStream extends AdsStream<DeltaDiscoveryRequest> {
  private readonly types = new Map<string, DeltaTypeState>();

  protected override onRequest(request: DeltaDiscoveryRequest): void {
    const typeUrl = request.typeUrl;
    if (!this.serves(typeUrl)) return;
    let state = this.types.get(typeUrl);
    if (!state) {
      const subscribe = request.resourceNamesSubscribe;
      state = {
        // Legacy wildcard: a first request naming nothing subscribes to everything.
        wildcard: subscribe.length === 0 || subscribe.includes('*'),
        names: new Set(subscribe.filter((n) => n !== '*')),
        clientVersions: new Map(Object.entries(request.initialResourceVersions)),
      };
      this.types.set(typeUrl, state);
    } else {
      this.answer(typeUrl, state, request);
      for (const name of request.resourceNamesSubscribe) {
        if (name === '*') state.wildcard = true;
        else state.names.add(name);
      }
      for (const name of request.resourceNamesUnsubscribe) {
        if (name === '*') {
          state.wildcard = false;
          for (const held of state.clientVersions.keys()) if (!state.names.has(held)) state.clientVersions.delete(held);
        } else {
          state.names.delete(name);
          state.clientVersions.delete(name);
        }
      }
    }
    this.flushAll();
  }

  private answer(typeUrl: string, state: DeltaTypeState, request: DeltaDiscoveryRequest): void {
    if (request.responseNonce === '') return;
    if (request.responseNonce !== state.pending?.nonce) {
      this.logger.debug('stale nonce ignored', { typeUrl, nonce: request.responseNonce });
      return;
    }
    const { version } = state.pending;
    delete state.pending;
    if (request.errorDetail) this.recordNack(typeUrl, version, request.errorDetail.message || `gRPC code ${request.errorDetail.code}`);
    else this.recordAck(typeUrl, version);
  }

  protected override flush(typeUrl: string): void {
    const state = this.types.get(typeUrl);
    const set = this.snapshot?.resourceSet(typeUrl);
    if (!state || !set || this.mustWaitForClusters(typeUrl)) return;
    const subscribed = (name: string) => state.wildcard || state.names.has(name);
    const updated: EncodedResource[] = [];
    for (const resource of set.items.values()) {
      if (subscribed(resource.name) && state.clientVersions.get(resource.name) !== resource.version) updated.push(resource);
    }
    const removed = [...state.clientVersions.keys()].filter((name) => !set.items.has(name));
    if (updated.length === 0 && removed.length === 0) return;
    for (const resource of updated) state.clientVersions.set(resource.name, resource.version);
    for (const name of removed) state.clientVersions.delete(name);
    const nonce = this.nextNonce();
    state.pending = { nonce, version: set.version };
    this.write(typeUrl, set.version, encodeDeltaResponse({ typeUrl, systemVersion: set.version, resources: updated, removed, nonce }));
  }

  protected override subscribedTypes(): string[] {
    return [...this.types.keys()];
  }

  protected override awaitingAnswer(typeUrl: string): boolean {
    return this.types.get(typeUrl)?.pending !== undefined;
  }
}
