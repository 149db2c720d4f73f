// The two clusters every egress listener routes to (seed 002 §6.5-6.6).
import type { ClusterJson } from '../envoy/resources.js';
import {
  ORIGINAL_DST_CLUSTER,
  ORIGINAL_DST_CONNECT_TIMEOUT,
  REJECT_CLUSTER,
  REJECT_CONNECT_TIMEOUT,
  REJECT_ENDPOINT,
} from './names.js';

/**
 * Forwards an allowed connection to the address it was headed for. The seed's
 * dns_lookup_family: V4_ONLY is left out: ORIGINAL_DST does no DNS, and IPv6
 * destinations must work.
 */
export function originalDstCluster(connectTimeout: string = ORIGINAL_DST_CONNECT_TIMEOUT): ClusterJson {
  return { name: ORIGINAL_DST_CLUSTER, type: 'ORIGINAL_DST', lbPolicy: 'CLUSTER_PROVIDED', connectTimeout };
}

/** A dead end: one endpoint where nothing listens, so a refused connection is closed, never forwarded. */
export function rejectCluster(connectTimeout: string = REJECT_CONNECT_TIMEOUT): ClusterJson {
  return {
    name: REJECT_CLUSTER,
    type: 'STATIC',
    connectTimeout,
    loadAssignment: {
      clusterName: REJECT_CLUSTER,
      endpoints: [{ lbEndpoints: [{ endpoint: { address: { socketAddress: { ...REJECT_ENDPOINT } } } }] }],
    },
  };
}
