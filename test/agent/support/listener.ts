// Small python3 listeners and a client, run inside test namespaces. The
// transparent one is what Envoy is to TPROXY: IP_TRANSPARENT, bound to
// 0.0.0.0:PORT, and getsockname() of an accepted connection is the original
// destination. Each answers one JSON line: who it is and what it saw.
import { type ChildProcess, spawn } from 'node:child_process';
import type { Netns } from './netns.js';

const LISTENER = `
import json, socket, sys
name, host, port, transparent = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1'
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if transparent:
    s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT
s.bind((host, port))
s.listen(16)
print('ready', flush=True)
while True:
    c, peer = s.accept()
    local = c.getsockname()
    c.sendall((json.dumps({'who': name, 'local': '%s:%d' % local, 'peer': peer[0]}) + '\\n').encode())
    c.close()
`;

const CLIENT = `
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
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
  const child = spawn('ip', ['netns', 'exec', ns.name, 'python3', '-u', '-c', LISTENER, name, host, String(port), transparent ? '1' : '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not start python3');
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`listener ${name} not ready after 5 s: ${stderr}`)), 5000);
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
  error?: string;
}

/** Dials host:port from inside ns; the answering listener's JSON, or {error}. */
export async function dial(ns: Netns, host: string, port: number, timeoutSeconds = 2): Promise<Answer> {
  const result = await ns.exec('python3', '-c', CLIENT, host, String(port), String(timeoutSeconds));
  try {
    return JSON.parse(result.stdout.trim()) as Answer;
  } catch {
    return { error: `client failed: ${result.stderr.trim() || result.stdout.trim()}` };
  }
}
