// Shared by the store tests: temp data dirs and canonical specs.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PolicySpec } from '../../src/policy/model.js';

export async function tempDir(prefix = 'egress-xds-store-'): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export const spec = (...sni: string[]): PolicySpec => ({ allow: { sni: [...sni].sort() } });
