// The denial log's metrics (src/denials, src/als): kept beside the registry's
// others but in their own file, so the areas do not edit one list.
import { Counter, Gauge, type Registry } from 'prom-client';

export function denialMetrics(registers: Registry[]) {
  return {
    denials: new Counter({
      name: 'egress_xds_denials_total',
      help: 'Connections Envoy refused (verdict "denied") or would have refused (audit, "would-deny"), by node and reason; nodes past the first --denials-metric-nodes share the label "other"',
      labelNames: ['node', 'reason', 'verdict'] as const,
      registers,
    }),
    alsRecords: new Counter({
      name: 'egress_xds_als_records_total',
      help: 'Access log entries received over the Access Log Service, by entry type: tcp and http are stored, not-a-denial entries (failures a forwarding chain reports that are not refusals) are not',
      labelNames: ['type'] as const,
      registers,
    }),
    alsStreamsRefused: new Counter({
      name: 'egress_xds_als_streams_refused_total',
      help: 'Access Log Service streams ended with an error: invalid (a message broke the protos or the contract), identity, capacity',
      labelNames: ['reason'] as const,
      registers,
    }),
    alsStreams: new Gauge({ name: 'egress_xds_als_streams', help: 'Access Log Service streams open now', registers }),
    denialsBuffered: new Gauge({ name: 'egress_xds_denials_buffered', help: 'Records held in the in-memory denial buffer', registers }),
    denialsDropped: new Counter({
      name: 'egress_xds_denials_dropped_total',
      help: 'Records not written to a sink: file (queue full or write error), follow (a live stream too slow to read)',
      labelNames: ['sink', 'why'] as const,
      registers,
    }),
  };
}
