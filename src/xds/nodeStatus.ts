// What the control plane knows of each connected Envoy: the shape of
// GET /v1/nodes. Written by the ADS streams, read by the admin API.

export interface NackInfo {
  /** The version Envoy rejected. */
  readonly version: string;
  readonly message: string;
  readonly at: string;
  /** True when the NACK named a response older than the one then in flight. */
  readonly superseded?: boolean;
}

export interface ResourceTypeStatus {
  /** version_info of the last response written for this type. */
  sent?: string;
  /** version_info of the last response Envoy acknowledged. */
  acked?: string;
  /** The last NACK, kept until a later version is acknowledged. */
  nack?: NackInfo;
  /** The version this node's current snapshot has for the type (what it should end up acknowledging). */
  latest?: string;
  /** acked === latest. */
  upToDate?: boolean;
}

export interface NodeStatus {
  readonly id: string;
  readonly cluster: string;
  /** ISO time the oldest open stream of this node connected. */
  readonly connectedAt: string;
  readonly streams: number;
  /**
   * The newest stream acknowledged the latest version of every type in the
   * node's snapshot (absent when the registry has no snapshot source).
   */
  readonly upToDate?: boolean;
  /**
   * Store revisions: the latest committed; the one whose state this node is
   * served now (lower while a change is being coalesced or compiled); the one
   * whose state it has acknowledged whole (null: none yet).
   */
  readonly revision?: { readonly latest: number; readonly served: number; readonly acknowledged: number | null };
  readonly resources: Readonly<Record<string, ResourceTypeStatus>>;
}
