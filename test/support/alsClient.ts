// A grpc-js Access Log Service client that sends what Envoy's gRPC access
// loggers send: StreamAccessLogsMessage batches of TCPAccessLogEntry or
// HTTPAccessLogEntry, the identifier (node, log_name) on the first message
// only. Encoding goes through @grpc/proto-loader, independent of the server's
// decoding path; raw Buffers are written as they are (to send broken input).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { envoyProtoIncludeDirs } from '../../src/envoy/protos.js';
import { ALS_LOG_NAME, SNI_FILTER_STATE_KEY } from '../../src/denials/record.js';

type AlsClient = grpc.Client & { StreamAccessLogs(callback: (error: grpc.ServiceError | null) => void): grpc.ClientWritableStream<unknown> };

let constructor: (new (address: string, credentials: grpc.ChannelCredentials) => AlsClient) | undefined;

function clientConstructor() {
  if (constructor) return constructor;
  const definition = protoLoader.loadSync('envoy/service/accesslog/v3/als.proto', { includeDirs: envoyProtoIncludeDirs(), keepCase: true, longs: String, enums: String, defaults: false, arrays: true });
  const service = definition['envoy.service.accesslog.v3.AccessLogService'] as grpc.ServiceDefinition;
  const method = service.StreamAccessLogs as grpc.MethodDefinition<unknown, unknown>;
  const serialize = method.requestSerialize;
  const wrapped = { StreamAccessLogs: { ...method, requestSerialize: (message: unknown) => (Buffer.isBuffer(message) ? message : serialize(message)) } };
  constructor = grpc.makeGenericClientConstructor(wrapped, 'AccessLogService') as unknown as typeof constructor;
  return constructor!;
}

const stringValue = protobuf.Root.fromJSON({ nested: { S: { fields: { value: { type: 'string', id: 1 } } } } }).lookupType('S');

export interface TcpEntry {
  source: string; // "ip:port"
  destination: string;
  sni?: string;
  /**
   * Where the SNI goes: tls_properties.tls_sni_hostname (what Envoy >= 1.24 fills for a TLS
   * passthrough, what today's listeners rely on), or the "egress.sni" filter state that
   * listeners of earlier versions set (the default here, to keep reading those).
   */
  sniVia?: 'tls' | 'filter-state';
  tags: Record<string, string>;
  startMs?: number;
  /** Extra common_properties fields, as proto-loader objects. */
  extra?: Record<string, unknown>;
}

export interface HttpEntry extends Omit<TcpEntry, 'sni'> {
  host: string;
  method?: string;
  path?: string;
  status?: number;
}

const address = (text: string) => {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text)!;
  return { socket_address: { address: match[1] ?? match[2], port_value: Number(match[3]) } };
};

const timestamp = (ms: number) => ({ seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 });

function common(entry: TcpEntry | HttpEntry, sni?: string, sniVia: 'tls' | 'filter-state' = 'filter-state') {
  return {
    downstream_remote_address: address(entry.source),
    downstream_local_address: address(entry.destination),
    start_time: timestamp(entry.startMs ?? Date.now()),
    duration: { seconds: '0', nanos: 120000 },
    upstream_cluster: 'reject_cluster',
    response_flags: { upstream_connection_failure: false },
    custom_tags: entry.tags,
    ...(sni && sniVia === 'tls' ? { tls_properties: { tls_sni_hostname: sni } } : {}),
    ...(sni && sniVia === 'filter-state' ? { filter_state_objects: { [SNI_FILTER_STATE_KEY]: { type_url: 'type.googleapis.com/google.protobuf.StringValue', value: Buffer.from(stringValue.encode({ value: sni }).finish()) } } } : {}),
    access_log_type: 'TcpConnectionEnd',
    ...entry.extra,
  };
}

export const tcpEntry = (entry: TcpEntry) => ({ common_properties: common(entry, entry.sni, entry.sniVia), connection_properties: { received_bytes: '517', sent_bytes: '0' } });

export const httpEntry = (entry: HttpEntry) => ({
  common_properties: { ...common(entry), access_log_type: 'DownstreamEnd' },
  protocol_version: 'HTTP11',
  request: { request_method: entry.method ?? 'GET', scheme: 'http', authority: entry.host, path: entry.path ?? '/', user_agent: 'curl/8.5.0', request_headers_bytes: '78' },
  response: { response_code: { value: entry.status ?? 403 }, response_code_details: 'egress_xds_host_not_allowed' },
});

export interface AlsStream {
  /** Sends one batch; the first carries the identifier. False when the stream's buffer is full (wait for drained()). */
  sendTcp(entries: TcpEntry[]): boolean;
  /** Resolves when the stream's write buffer has room again, as Envoy's bounded gRPC logger waits. */
  drained(): Promise<void>;
  sendHttp(entries: HttpEntry[]): void;
  /** Any message, as a proto-loader object or raw bytes. */
  sendRaw(message: unknown): void;
  /** Half-closes, waits for the server's answer (or error), and closes the client. */
  finish(): Promise<grpc.ServiceError | null>;
  /** The server's answer, whenever it comes (an error ends the stream early). */
  readonly done: Promise<grpc.ServiceError | null>;
  close(): void;
}

export function openAlsStream(target: string, nodeId: string, options: { cluster?: string; logName?: string; credentials?: grpc.ChannelCredentials } = {}): AlsStream {
  const Client = clientConstructor();
  const client = new Client(target, options.credentials ?? grpc.credentials.createInsecure());
  let resolveDone!: (error: grpc.ServiceError | null) => void;
  const done = new Promise<grpc.ServiceError | null>((resolve) => (resolveDone = resolve));
  const call = client.StreamAccessLogs((error) => resolveDone(error));
  call.on('error', () => undefined);
  let first = true;
  const identifier = () => {
    if (!first) return {};
    first = false;
    return { identifier: { node: { id: nodeId, cluster: options.cluster ?? 'test', user_agent_name: 'envoy' }, log_name: options.logName ?? ALS_LOG_NAME } };
  };
  return {
    sendTcp: (entries) => call.write({ ...identifier(), tcp_logs: { log_entry: entries.map(tcpEntry) } }),
    drained: () => new Promise((resolve) => call.once('drain', resolve)),
    sendHttp: (entries) => void call.write({ ...identifier(), http_logs: { log_entry: entries.map(httpEntry) } }),
    sendRaw: (message) => void call.write(message),
    finish: async () => {
      call.end();
      const answer = await done;
      // The stream is over: release the channel too, so that a test's process can exit
      // whatever the server does with idle connections on close.
      client.close();
      return answer;
    },
    done,
    close: () => {
      call.cancel();
      client.close();
    },
  };
}
