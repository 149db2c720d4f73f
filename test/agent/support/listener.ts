// Small python3 listeners and a client, run inside test namespaces. The
// transparent one is what Envoy is to TPROXY: IP_TRANSPARENT, bound to
// 0.0.0.0:PORT, and getsockname() of an accepted connection is the original
// destination. Each answers one JSON line: who it is and what it saw.
import { type ChildProcess, spawn } from 'node:child_process';
import type { Netns } from './netns.js';

const LISTENER = `
import json, socket, sys
name, host, port, transparent = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1'
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if transparent:
    s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT
s.bind((host, port))
s.listen(16)
print('ready', flush=True)
while True:
    c, peer = s.accept()
    local = c.getsockname()
    c.sendall((json.dumps({'who': name, 'local': '%s:%d' % local[:2], 'peer': peer[0]}) + '\\n').encode())
    c.close()
`;

const CLIENT = `
import socket, sys
try:
    mark = int(sys.argv[4], 0) if len(sys.argv) > 4 else 0
    c = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, socket.SOCK_STREAM)
    if mark:
        c.setsockopt(socket.SOL_SOCKET, 36, mark)  # SO_MARK, as Envoy's upstream_bind_config socket option
    c.settimeout(float(sys.argv[3]))
    c.connect((sys.argv[1], int(sys.argv[2])))
    c.settimeout(float(sys.argv[3]))
    print(c.makefile().readline().strip() or '{"error": "closed"}')
except Exception as e:
    print('{"error": "%s"}' % type(e).__name__)
`;

export interface Listener {
  readonly pid: number;
  stop(): Promise<void>;
}

export async function startListener(ns: Netns, name: string, host: string, port: number, transparent: boolean): Promise<Listener> {
  return startPython(ns, name, LISTENER, [name, host, String(port), transparent ? '1' : '0']);
}

/** A python3 script inside ns that prints "ready" once it serves. */
export async function startPython(ns: Netns, name: string, script: string, args: string[]): Promise<Listener> {
  const child = spawn('ip', ['netns', 'exec', ns.name, 'python3', '-u', '-c', script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not start python3');
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`listener ${name} not ready after 30 s: ${stderr}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`listener ${name} exited (${code}): ${stderr}`));
    });
  }).catch(async (error: unknown) => {
    await stopChild(child);
    throw error;
  });
  return { pid, stop: () => stopChild(child) };
}

/** Kills the one process this test started, by its PID, and waits (bounded) for it. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(child.pid, 'SIGTERM');
  const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 3000));
  if ((await Promise.race([exited, timer])) === 'timeout' && child.exitCode === null) {
    process.kill(child.pid, 'SIGKILL');
    await exited;
  }
}

export interface Answer {
  who?: string;
  local?: string;
  peer?: string;
  original?: string;
  error?: string;
}

/** Dials host:port from inside ns (its socket marked with SO_MARK mark, if given); the answering listener's JSON, or {error}. */
export async function dial(ns: Netns, host: string, port: number, timeoutSeconds = 2, mark = 0): Promise<Answer> {
  const result = await ns.exec('python3', '-c', CLIENT, host, String(port), String(timeoutSeconds), String(mark));
  try {
    return JSON.parse(result.stdout.trim()) as Answer;
  } catch {
    return { error: `client failed: ${result.stderr.trim() || result.stdout.trim()}` };
  }
}

// UDP: a server that answers each datagram with the same JSON line; transparent,
// it is what Envoy's DNS listener is to TPROXY (IP_TRANSPARENT, the original
// destination from IP_RECVORIGDSTADDR, the answer sent from that address).
const UDP_SERVER = `
import json, socket, sys
name, host, port, transparent = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1'
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if transparent:
    s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT
    s.setsockopt(socket.SOL_IP, 20, 1)  # IP_RECVORIGDSTADDR
s.bind((host, port))
print('ready', flush=True)
while True:
    data, anc, flags, peer = s.recvmsg(2048, 1024)
    local = (host, port)
    for level, kind, d in anc:
        if level == socket.SOL_IP and kind == 20:
            local = (socket.inet_ntoa(d[4:8]), int.from_bytes(d[2:4], 'big'))
    msg = json.dumps({'who': name, 'local': '%s:%d' % local, 'peer': peer[0]}).encode()
    if transparent:
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        r.setsockopt(socket.SOL_IP, 19, 1)
        r.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        r.bind(local)
        r.sendto(msg, peer)
        r.close()
    else:
        s.sendto(msg, peer)
`;

// A connected UDP socket: an answer only from the address dialled, and an ICMP
// port unreachable (REJECT) shows as ConnectionRefusedError.
const UDP_CLIENT = `
import socket, sys
try:
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(float(sys.argv[3]))
    c.connect((sys.argv[1], int(sys.argv[2])))
    c.send(b'query')
    print(c.recv(2048).decode().strip())
except Exception as e:
    print('{"error": "%s"}' % type(e).__name__)
`;

export async function startUdpServer(ns: Netns, name: string, host: string, port: number, transparent: boolean): Promise<Listener> {
  return startPython(ns, name, UDP_SERVER, [name, host, String(port), transparent ? '1' : '0']);
}

export async function udpDial(ns: Netns, host: string, port: number, timeoutSeconds = 2): Promise<Answer> {
  const result = await ns.exec('python3', '-c', UDP_CLIENT, host, String(port), String(timeoutSeconds));
  try {
    return JSON.parse(result.stdout.trim()) as Answer;
  } catch {
    return { error: `client failed: ${result.stderr.trim() || result.stdout.trim()}` };
  }
}

// What Envoy's forward-proxy TLS listener needs from a DNAT: the original
// destination, read with getsockopt(SO_ORIGINAL_DST) from conntrack.
const ORIGINAL_DST_LISTENER = `
import json, socket, sys
name, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(16)
print('ready', flush=True)
while True:
    c, peer = s.accept()
    d = c.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
    original = '%s:%d' % (socket.inet_ntoa(d[4:8]), int.from_bytes(d[2:4], 'big'))
    c.sendall((json.dumps({'who': name, 'local': '%s:%d' % c.getsockname(), 'peer': peer[0], 'original': original}) + '\\n').encode())
    c.close()
`;

export async function startOriginalDstListener(ns: Netns, name: string, host: string, port: number): Promise<Listener> {
  return startPython(ns, name, ORIGINAL_DST_LISTENER, [name, host, String(port)]);
}
