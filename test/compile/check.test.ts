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
const compiled = compileEgress(policies, { profile: 'seed' });

describe('checkConnection, profile seed', () => {
  it('reports the chain Envoy picks and the policy that allows', () => {
    assert.deepEqual(
      checkConnection(compiled, policies, { sourceIp: '172.31.0.2', destinationIp: '140.82.112.3', destinationPort: 443, serverName: 'github.com' }),
      {
        verdict: 'allow',
        policy: 'github',
        filterChain: 'allow|github|port=*|dst=*|sni=github.com,+1',
        path: ['filter_chain_match {"serverNames":["github.com","www.github.com"],"sourcePrefixRanges":[{"addressPrefix":"172.31.0.0","prefixLen":16}]} → allow|github|port=*|dst=*|sni=github.com,+1'],
        upstream: { kind: 'original-destination', address: '140.82.112.3:443' },
      },
    );
    assert.deepEqual(
      checkConnection(compiled, policies, { sourceIp: '192.0.2.1', destinationIp: '10.0.0.53', destinationPort: 53 }),
      {
        verdict: 'allow',
        policy: 'dns',
        filterChain: 'allow|dns|port=53|dst=10.0.0.53/32|sni=*',
        path: ['filter_chain_match {"destinationPort":53,"prefixRanges":[{"addressPrefix":"10.0.0.53","prefixLen":32}]} → allow|dns|port=53|dst=10.0.0.53/32|sni=*'],
        upstream: { kind: 'original-destination', address: '10.0.0.53:53' },
      },
    );
  });

  it('reports the default chain for what nothing allows', () => {
    assert.deepEqual(
      checkConnection(compiled, policies, { sourceIp: '172.31.0.2', destinationIp: '93.184.216.34', destinationPort: 443, serverName: 'example.com' }),
      { verdict: 'deny', filterChain: 'reject', path: ['no filter chain matched → default filter chain reject'] },
    );
    assert.deepEqual(
      checkConnection(compiled, policies, { sourceIp: '192.0.2.1', destinationIp: '10.0.0.53', destinationPort: 5353 }),
      { verdict: 'deny', filterChain: 'reject', path: ['no filter chain matched → default filter chain reject'] },
    );
  });
});

describe('checkConnection, profile hardened', () => {
  const hardened = compileEgress(policies);

  it('explains the matcher branches, the policy, and that an allowed name is dialled by name', () => {
    assert.deepEqual(
      checkConnection(hardened, policies, { sourceIp: '172.31.0.2', destinationIp: '192.0.2.66', destinationPort: 8443, serverName: 'github.com' }),
      {
        verdict: 'allow',
        policy: 'github',
        filterChain: 'name|172.31.0.0/16',
        path: [
          'destination_port=8443: no entry',
          'transport_protocol=tls',
          'source_ip 172.31.0.2 in 172.31.0.0/16',
          'destination_ip=192.0.2.66: no entry',
          'server_name github.com = github.com',
          '→ name|172.31.0.0/16',
        ],
        upstream: { kind: 'name', address: 'github.com:8443' },
      },
    );
  });

  it('sends what an address rule allows to the original destination', () => {
    const result = checkConnection(hardened, policies, { sourceIp: '192.0.2.1', destinationIp: '10.0.0.53', destinationPort: 53 });
    assert.equal(result.verdict, 'allow');
    assert.equal(result.policy, 'dns');
    assert.equal(result.filterChain, 'original_dst|*');
    assert.deepEqual(result.upstream, { kind: 'original-destination', address: '10.0.0.53:53' });
  });

  it('names the refusal: no policy, or the loop guard', () => {
    const none = checkConnection(hardened, policies, { sourceIp: '172.31.0.2', destinationIp: '93.184.216.34', destinationPort: 443, serverName: 'example.com' });
    assert.equal(none.verdict, 'deny');
    assert.equal(none.filterChain, 'reject');
    assert.equal(none.upstream, undefined);
    const loop = checkConnection(hardened, policies, { sourceIp: '172.31.0.2', destinationIp: '172.31.0.1', destinationPort: 15001, serverName: 'github.com' });
    assert.deepEqual(loop, { verdict: 'deny', filterChain: 'reject_loop', path: ['destination_port=15001', '→ reject_loop'] });
  });

  it('a plain-HTTP request on port 80: the chain, then the route table it names over RDS, then the route', () => {
    const from = { sourceIp: '172.31.0.2', destinationIp: '93.184.216.34', destinationPort: 80 };
    const allowed = checkConnection(hardened, policies, { ...from, httpHost: 'www.github.com' });
    assert.equal(allowed.verdict, 'allow');
    assert.equal(allowed.policy, 'github');
    assert.equal(allowed.filterChain, 'http|172.31.0.0/16');
    assert.deepEqual(allowed.upstream, { kind: 'name', address: 'www.github.com:80' });
    assert.equal(allowed.route, 'allowed_by_name / allowed_by_name');
    assert.match(allowed.path.at(-1)!, /^route table "http\|172\.31\.0\.0\/16" \(RDS\) → virtual host allowed_by_name \(exact www\.github\.com\) → route allowed_by_name$/);
    assert.ok(allowed.path.includes('destination_port=80'), allowed.path.join(' | '));

    const refused = checkConnection(hardened, policies, { ...from, httpHost: 'evil.example' });
    assert.deepEqual([refused.verdict, refused.status, refused.route, refused.upstream], ['deny', 403, 'refused / refused', undefined]);
    assert.match(refused.body!, /"evil\.example".*allow\.sni/);
    // Another port in the Host: Envoy would dial it, so it is refused.
    assert.equal(checkConnection(hardened, policies, { ...from, httpHost: 'github.com:22' }).status, 403);
    // Without a Host the connection is still the HTTP chain's; the answer says what is missing.
    const noHost = checkConnection(hardened, policies, { ...from, applicationProtocols: ['http/1.1'] } as typeof from);
    assert.equal(noHost.verdict, 'deny');
  });
});
