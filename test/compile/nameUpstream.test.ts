import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dnsCacheConfig, nameUpstreamCluster } from '../../src/compile/nameUpstream.js';
import { DNS_CACHE_NAME, NAME_UPSTREAM_CLUSTER } from '../../src/compile/names.js';
import { decodeStrictToJson, encodeProtoJson } from '../../src/envoy/codec.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { validateResource } from '../../src/envoy/validateRules.js';

test('the name upstream cluster decodes strictly as an Envoy Cluster with the seed 000 DNS cache', () => {
  const cluster = nameUpstreamCluster({ resolvers: ['8.8.8.8', '1.1.1.1:5353', '[2001:4860:4860::8888]:53'] });
  const json = decodeStrictToJson(TypeUrl.Cluster, encodeProtoJson(TypeUrl.Cluster, cluster as unknown as Record<string, unknown>));
  assert.equal(json.name, NAME_UPSTREAM_CLUSTER);
  assert.equal(json.lbPolicy, 'CLUSTER_PROVIDED');
  const clusterType = json.clusterType as { name: string; typedConfig: { dnsCacheConfig: Record<string, unknown> } };
  assert.equal(clusterType.name, 'envoy.clusters.dynamic_forward_proxy');
  const cache = clusterType.typedConfig.dnsCacheConfig;
  assert.equal(cache.name, DNS_CACHE_NAME);
  assert.equal(cache.dnsLookupFamily, 'V4_ONLY');
  const resolver = (cache.typedDnsResolverConfig as { typedConfig: Record<string, unknown> }).typedConfig;
  assert.deepEqual(resolver.resolvers, [
    { socketAddress: { address: '8.8.8.8', portValue: 53 } },
    { socketAddress: { address: '1.1.1.1', portValue: 5353 } },
    { socketAddress: { address: '2001:4860:4860::8888', portValue: 53 } },
  ]);
  assert.deepEqual(resolver.dnsResolverOptions, { useTcpForDnsLookups: true, noDefaultSearchDomain: true });
});

test('every user of the DNS cache gets the identical configuration (Envoy refuses two configs under one name)', () => {
  assert.deepEqual(dnsCacheConfig({ lookupFamily: 'AUTO' }), dnsCacheConfig({ lookupFamily: 'AUTO' }));
  const cluster = nameUpstreamCluster({ lookupFamily: 'AUTO' });
  assert.deepEqual(cluster.clusterType!.typedConfig["dnsCacheConfig"], dnsCacheConfig({ lookupFamily: 'AUTO' }));
});

test('the cluster keeps Envoy\'s validation rules with and without resolvers (c-ares refuses an empty resolver list)', () => {
  for (const options of [{}, { resolvers: ['10.0.0.2'] }]) {
    assert.deepEqual(validateResource(TypeUrl.Cluster, nameUpstreamCluster(options) as unknown as Record<string, unknown>), []);
  }
  assert.equal(dnsCacheConfig({}).typedDnsResolverConfig, undefined);
});
