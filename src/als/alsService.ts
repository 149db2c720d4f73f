// envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs, served on the
// ADS server (src/xds/server.ts ExtraService): Envoy's gRPC access loggers
// reach it through the cluster they already have for ADS. A client stream:
// Envoy sends batches and never reads an answer; the first message names the
// node. A message that breaks Envoy's protos or the contract ends the stream
// with INVALID_ARGUMENT naming the field, and nothing of it is stored.
import { status as GrpcStatus, type MethodDefinition, type sendUnaryData, type ServerReadableStream, type ServiceDefinition } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import type { DenialRecord } from '../denials/record.js';
import { checkNodeIdentity } from '../xds/nodeIdentity.js';
import type { ExtraService } from '../xds/server.js';
import { AlsInputError, decodeAccessLogsMessage, type AlsIdentifier } from './decode.js';

const passBytes = (bytes: Buffer): Buffer => bytes;
const EMPTY = Buffer.alloc(0);

export const accessLogServiceDefinition = {
  streamAccessLogs: {
    path: '/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs',
    requestStream: true,
    responseStream: false,
    // Decoded in the handler, so that bad bytes get INVALID_ARGUMENT with the reason, not a generic INTERNAL.
    requestSerialize: passBytes,
    requestDeserialize: passBytes,
    responseSerialize: passBytes,
    responseDeserialize: passBytes,
  } satisfies MethodDefinition<Buffer, Buffer>,
} satisfies ServiceDefinition;

export interface AccessLogDependencies {
  /** Where stamped records go (src/denials/denialLog.ts). */
  readonly ingest: (records: readonly DenialRecord[]) => void;
  /** The store revision in force on the node now, stamped on records whose tags carry none. */
  readonly revision: (nodeId: string) => string;
  /** The Listener version the node has acknowledged, if any. */
  readonly listenerVersion: (nodeId: string) => string | undefined;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Open ALS streams at once (default 10,000); more get RESOURCE_EXHAUSTED. */
  readonly maxStreams?: number;
  /** Largest message accepted (default 256 KiB): one message is decoded in one go, so this bounds the pause it causes. */
  readonly maxMessageBytes?: number;
}

export function accessLogService(deps: AccessLogDependencies): ExtraService {
  const maxStreams = deps.maxStreams ?? 10_000;
  const maxMessageBytes = deps.maxMessageBytes ?? 256 * 1024;
  let open = 0;
  return {
    definition: accessLogServiceDefinition,
    implementation: ({ limits, nodeIdentity }) => ({
      streamAccessLogs: (call: ServerReadableStream<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
        const { metrics, logger } = deps;
        let finished = false;
        const finish = (error?: { code: GrpcStatus; details: string }, reason?: string) => {
          if (finished) return;
          finished = true;
          open -= 1;
          metrics.alsStreams.set(open);
          if (error) {
            metrics.alsStreamsRefused.inc({ reason: reason ?? 'invalid' });
            logger.warn('access log stream refused', { peer: call.getPeer(), node: identifier?.nodeId, code: GrpcStatus[error.code], error: error.details });
            callback(error);
          } else {
            callback(null, EMPTY);
          }
        };
        open += 1;
        metrics.alsStreams.set(open);
        if (open > maxStreams) {
          finish({ code: GrpcStatus.RESOURCE_EXHAUSTED, details: `this control plane takes at most ${maxStreams} access log streams; retry later` }, 'capacity');
          return;
        }
        let identifier: AlsIdentifier | undefined;
        call.on('data', (bytes: Buffer) => {
          if (finished) return;
          // One message per turn of the event loop: ADS streams get their turn between batches, and a
          // flood waits in HTTP/2 flow control (Envoy buffers, then drops logs) instead of in our memory.
          call.pause();
          setImmediate(() => call.resume());
          if (bytes.length > maxMessageBytes) {
            finish({ code: GrpcStatus.RESOURCE_EXHAUSTED, details: `a StreamAccessLogsMessage of ${bytes.length} bytes is larger than ${maxMessageBytes} (Envoy flushes at buffer_size_bytes, 16 KiB by default)` }, 'too-large');
            return;
          }
          let decoded;
          try {
            decoded = decodeAccessLogsMessage(bytes, { first: identifier === undefined });
          } catch (error) {
            const details = error instanceof AlsInputError ? error.message : `cannot decode the message: ${(error as Error).message}`;
            finish({ code: GrpcStatus.INVALID_ARGUMENT, details });
            return;
          }
          if (!identifier) {
            if (!decoded.identifier) {
              finish({ code: GrpcStatus.INVALID_ARGUMENT, details: 'the first StreamAccessLogsMessage of a stream must carry identifier.node' });
              return;
            }
            if (Buffer.byteLength(decoded.identifier.nodeId) > limits.maxNodeIdBytes) {
              finish({ code: GrpcStatus.INVALID_ARGUMENT, details: `identifier.node.id is longer than ${limits.maxNodeIdBytes} bytes` });
              return;
            }
            if (nodeIdentity.kind !== 'none') {
              const check = checkNodeIdentity(nodeIdentity, call.getAuthContext().sslPeerCertificate, decoded.identifier.nodeId);
              if (!check.ok) {
                finish({ code: GrpcStatus.PERMISSION_DENIED, details: check.message }, 'identity');
                return;
              }
            }
            identifier = decoded.identifier;
          } else if (decoded.identifier && decoded.identifier.nodeId !== identifier.nodeId) {
            finish({ code: GrpcStatus.INVALID_ARGUMENT, details: `identifier.node.id changed within the stream ("${identifier.nodeId}" then "${decoded.identifier.nodeId}")` });
            return;
          }
          const node = identifier.nodeId;
          const revision = deps.revision(node);
          const listenerVersion = deps.listenerVersion(node);
          const records = decoded.records.map((r) => ({
            ...r,
            node,
            revision: r.revision ?? revision,
            ...(listenerVersion !== undefined ? { listenerVersion } : {}),
          }));
          deps.ingest(records);
          if (records.length > 0) metrics.alsRecords.inc({ type: records[0]!.http ? 'http' : 'tcp' }, records.length);
          // A forwarding chain's logger also sends failures that are not denials (accessLogContract.ts).
          if (decoded.ignored > 0) metrics.alsRecords.inc({ type: 'not-a-denial' }, decoded.ignored);
        });
        call.on('end', () => finish());
        // The peer went away: nothing to answer.
        const release = () => {
          if (finished) return;
          finished = true;
          open -= 1;
          metrics.alsStreams.set(open);
        };
        call.on('error', release);
        call.on('cancelled', release);
      },
    }),
  };
}
