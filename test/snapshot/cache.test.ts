import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SnapshotCache } from '../../src/snapshot/cache.js';
import { encodeResource } from '../../src/snapshot/encodedResource.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { egressGroupCompiler } from '../../src/snapshot/egressGroups.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import type { Policy } from '../../src/policy/model.js';

const github: Policy = { name: 'github', sources: ['172.31.0.0/16'], allow: { sni: ['github.com'] } };
const pypi: Policy = { name: 'pypi', nodes: ['build-*'], allow: { sni: ['pypi.org'] } };

test('versions are content hashes: the same policies give the same versions, in any order, in a new cache too', () => {
  const a = new SnapshotCache(egressGroupCompiler());
  a.setPolicies([github, pypi]);
  const b = new SnapshotCache(egressGroupCompiler());
  b.setPolicies([pypi, github]);
  for (const type of [TypeUrl.Listener, TypeUrl.Cluster]) {
    assert.equal(a.snapshotFor('build-1').version(type), b.snapshotFor('build-1').version(type));
    assert.match(a.snapshotFor('build-1').version(type)!, /^[0-9a-f]{16}$/);
  }
  assert.notEqual(a.snapshotFor('build-1').version(TypeUrl.Listener), a.snapshotFor('web-1').version(TypeUrl.Listener), 'different groups, different listeners');
  assert.equal(a.snapshotFor('build-1').version(TypeUrl.Cluster), a.snapshotFor('web-1').version(TypeUrl.Cluster), 'same clusters, same version');
});

test('watchers are told only when their own snapshot content changes; groups are shared and compiled once', () => {
  let compiles = 0;
  const compiler = egressGroupCompiler();
  const cache = new SnapshotCache((policies) => {
    compiles += 1;
    return compiler(policies);
  });
  cache.setPolicies([github, pypi]);
  const told: string[] = [];
  for (const node of ['build-1', 'build-2', 'web-1']) cache.watch(node, () => told.push(node));
  compiles = 0;

  cache.setPolicies([github, { ...pypi, allow: { sni: ['pypi.org', 'files.pythonhosted.org'] } }]);
  assert.deepEqual(told.sort(), ['build-1', 'build-2']);
  assert.equal(compiles, 1, 'the build-* group is compiled once; the web group is reused');

  told.length = 0;
  compiles = 0;
  // The same policies again (as after a no-op write): nothing compiled, nobody told.
  cache.setPolicies([{ ...github }, { ...pypi, allow: { sni: ['pypi.org', 'files.pythonhosted.org'] } }]);
  assert.deepEqual(told, []);
  assert.equal(compiles, 0);
});

test('a snapshot refuses two resources of one type with the same name', () => {
  const cluster = { name: 'c', type: 'STATIC', connectTimeout: '1s' };
  assert.throws(
    () => new Snapshot([encodeResource(TypeUrl.Cluster, 'c', cluster), encodeResource(TypeUrl.Cluster, 'c', cluster)], 0n),
    /duplicate .*Cluster resource "c"/,
  );
});
