// Connections that stay open, for the connection-cap tests: a listener that keeps
// every connection it accepts until the client closes it and counts its accepts
// (a transparent one is what Envoy is to TPROXY), and a client process that opens
// and closes connections on request, from a chosen source address. Both are
// python3 inside the test's namespaces; every wait is bounded.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { stopChild } from './listener.js';
import type { Netns } from './netns.js';

const HOLDING_LISTENER = `
import socket, sys, threading
host, port, transparent = sys.argv[1], int(sys.argv[2]), sys.argv[3] == '1'
v6 = ':' in host
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if transparent:
    if v6:
        s.setsockopt(41, 75, 1)  # IPV6_TRANSPARENT
    else:
        s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT
s.bind((host, port))
s.listen(64)
print('ready', flush=True)
def hold(c):
    try:
        while c.recv(1024):
            pass
    except Exception:
        pass
    c.close()
while True:
    c, peer = s.accept()
    print('accept %s' % peer[0], flush=True)
    threading.Thread(target=hold, args=(c,), daemon=True).start()
`;

const HOLDING_CLIENT = `
import json, socket, sys
conns = {}
n = 0
for line in sys.stdin:
    words = line.split()
    try:
        if words[0] == 'open':
            src, host, port = words[1], words[2], int(words[3])
            c = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_STREAM)
            c.bind((src, 0))
            c.settimeout(3)
            try:
                c.connect((host, port))
            except Exception as e:
                c.close()
                print(json.dumps({'error': type(e).__name__}), flush=True)
                continue
            n += 1
            conns[n] = c
            print(json.dumps({'id': n, 'port': c.getsockname()[1]}), flush=True)
        elif words[0] == 'close':
            conns.pop(int(words[1])).close()
            print(json.dumps({'closed': int(words[1])}), flush=True)
    except Exception as e:
        print(json.dumps({'error': 'client: %s' % e}), flush=True)
`;

export interface HoldingListener {
  /** Source addresses of the connections accepted so far, in order. */
  readonly accepted: string[];
  stop(): Promise<void>;
}

export async function startHoldingListener(ns: Netns, host: string, port: number, transparent: boolean): Promise<HoldingListener> {
  const child = spawn('ip', ['netns', 'exec', ns.name, 'python3', '-u', '-c', HOLDING_LISTENER, host, String(port), transparent ? '1' : '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const accepted: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: child.stdout! });
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`holding listener ${host}:${port} not ready after 30 s: ${stderr}`)), 30_000);
    lines.on('line', (line) => {
      if (line === 'ready') {
        clearTimeout(timer);
        resolve();
      } else if (line.startsWith('accept ')) {
        accepted.push(line.slice(7));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`holding listener exited (${code}): ${stderr}`));
    });
  });
  try {
    await ready;
  } catch (error) {
    await stopChild(child);
    throw error;
  }
  return { accepted, stop: () => stopChild(child) };
}

export interface OpenResult {
  readonly id?: number;
  /** The connection's source port. */
  readonly port?: number;
  readonly error?: string;
}

export interface HoldingClient {
  /** Connects from src to host:port and keeps the connection open; its id, or the error (ConnectionRefusedError for a reset SYN). */
  open(src: string, host: string, port: number): Promise<OpenResult>;
  close(id: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startHoldingClient(ns: Netns): Promise<HoldingClient> {
  const child: ChildProcess = spawn('ip', ['netns', 'exec', ns.name, 'python3', '-u', '-c', HOLDING_CLIENT], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const pending: ((line: string) => void)[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => pending.shift()?.(line));
  const request = (line: string): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`holding client: no answer to "${line}" in 15 s: ${stderr}`)), 15_000);
      pending.push((answer) => {
        clearTimeout(timer);
        resolve(JSON.parse(answer) as Record<string, unknown>);
      });
      child.stdin!.write(`${line}\n`);
    });
  return {
    open: async (src, host, port) => (await request(`open ${src} ${host} ${port}`)) as OpenResult,
    close: async (id) => {
      const answer = await request(`close ${id}`);
      if (answer['closed'] !== id) throw new Error(`holding client: close ${id} → ${JSON.stringify(answer)}`);
    },
    stop: async () => {
      child.stdin!.end();
      await stopChild(child);
    },
  };
}

/**
 * Conntrack's state of the TCP connection from source port `sport`, read in ns
 * (/proc/net/nf_conntrack): "ESTABLISHED", "TIME_WAIT", …; undefined when it has none.
 */
export async function conntrackState(ns: Netns, sport: number): Promise<string | undefined> {
  const table = await ns.must('cat', '/proc/net/nf_conntrack');
  const line = table.split('\n').find((l) => / tcp /.test(l) && l.includes(` sport=${sport} `));
  return line === undefined ? undefined : /\btcp\s+\d+\s+\d+\s+([A-Z_]+)/.exec(line)?.[1];
}
