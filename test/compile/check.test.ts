// checkConnection: the answer of POST /v1/check.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkConnection } from '../../src/compile/check.js';
import { compileEgress } from '../../src/compile/compileEgress.js';
import type { Policy } from '../../src/policy/model.js';

const policies: Policy[] = [
  { name: 'github', sources: ['172.31.0.0/16'], allow: { sni: ['github.com', 'www.github.com'] } },
  { name: 'dns', allow: { sni: [], cidrs: [{ cidr: '10.0.0.53/32', ports: [53] }] } },
];
const compiled = compileEgress(policies);

describe('checkConnection', () => {
  it('reports the chain Envoy picks and the policy that allows', () => {
    assert.deepEqual(
      checkConnection(compiled, policies, { sourceIp: '172.31.0.2', destinationIp: '140.82.112.3', destinationPort: 443, serverName: 'github.com' }),
      { verdict: 'allow', policy: 'github', filterChain: 'allow|github|port=*|dst=*|sni=github.com,+1' },
    );
    assert.deepEqual(
      checkConnection(compiled, policies, { sourceIp: '192.0.2.1', destinationIp: '10.0.0.53', destinationPort: 53 }),
      { verdict: 'allow', policy: 'dns', filterChain: 'allow|dns|port=53|dst=10.0.0.53/32|sni=*' },
    );
  });

  it('reports the default chain for what nothing allows', () => {
    assert.deepEqual(
      checkConnection(compiled, policies, { sourceIp: '172.31.0.2', destinationIp: '93.184.216.34', destinationPort: 443, serverName: 'example.com' }),
      { verdict: 'deny', filterChain: 'reject' },
    );
    assert.deepEqual(
      checkConnection(compiled, policies, { sourceIp: '192.0.2.1', destinationIp: '10.0.0.53', destinationPort: 5353 }),
      { verdict: 'deny', filterChain: 'reject' },
    );
  });
});
