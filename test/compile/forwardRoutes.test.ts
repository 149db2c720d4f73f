// The forward proxy's HTTP routes on named examples, through the model of Envoy's route
// selection: wildcards never match the apex, ports are checked, nested address ranges
// carry the ports around them, non-octet-aligned ranges are exact, and a dotted quad in a
// form the policies do not spell never reaches outside the ranges they allow.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileEgress } from '../../src/compile/compileEgress.js';
import { checkForwardHttp } from '../../src/compile/forwardCheck.js';
import { intendedForwardRoute } from '../../src/compile/forwardRoute.js';
import type { Policy } from '../../src/policy/model.js';

const policies: Policy[] = [
  {
    name: 'ci',
    sources: ['172.31.4.0/24'],
    allow: {
      sni: ['github.com', '*.githubusercontent.com'],
      cidrs: [{ cidr: '10.0.0.0/8', ports: [22] }, { cidr: '10.1.0.0/16', ports: [5432] }, { cidr: '10.2.0.4/30' }, { cidr: '2001:db8::1/128', ports: [443] }],
    },
  },
  { name: 'everyone', allow: { sni: ['pypi.org'] } },
];
const compiled = compileEgress(policies, { forwardProxy: {}, transparent: false });
const CI = '172.31.4.7';

function expectRoute(authority: string, method: string, verdict: 'allow' | 'deny', sourceIp = CI, fragment?: RegExp): void {
  const request = { sourceIp, method, authority };
  const envoy = checkForwardHttp(compiled, policies, request);
  assert.equal(envoy.verdict, verdict, `${method} ${authority}: ${envoy.path.join(' / ')}`);
  assert.equal(intendedForwardRoute(policies, request).verdict, verdict, `intended ${method} ${authority}`);
  if (fragment) assert.match(envoy.body ?? '', fragment);
}

describe('forward proxy routes', () => {
  it('names: CONNECT on 443, plain HTTP on 80; a wildcard never matches its apex', () => {
    expectRoute('github.com:443', 'CONNECT', 'allow');
    expectRoute('GitHub.COM:443', 'CONNECT', 'allow');
    expectRoute('github.com', 'GET', 'allow');
    expectRoute('github.com:80', 'GET', 'allow');
    expectRoute('raw.githubusercontent.com:443', 'CONNECT', 'allow');
    expectRoute('a.b.githubusercontent.com:443', 'CONNECT', 'allow');
    expectRoute('githubusercontent.com:443', 'CONNECT', 'deny', CI, /allow\.sni/);
    expectRoute('github.com:22', 'CONNECT', 'deny', CI, /port 443/);
    expectRoute('github.com', 'CONNECT', 'deny', CI, /port 443/);
    expectRoute('github.com:443', 'GET', 'deny', CI, /plain HTTP on port 80/);
    expectRoute('pypi.org:443', 'CONNECT', 'allow', '8.8.8.8');
    expectRoute('github.com:443', 'CONNECT', 'deny', '8.8.8.8', /no policy selecting this source allows this name/);
  });

  it('addresses: the most specific range decides, with the ports of every range around it', () => {
    expectRoute('10.9.9.9:22', 'CONNECT', 'allow');
    expectRoute('10.9.9.9:5432', 'CONNECT', 'deny', CI, /port 22 only/);
    expectRoute('10.1.2.3:5432', 'CONNECT', 'allow');
    expectRoute('10.1.2.3:22', 'CONNECT', 'allow');
    expectRoute('10.1.2.3:443', 'CONNECT', 'deny', CI, /port 22, 5432 only/);
    // A /30 is its four addresses, on every port (and every port of the /8 around it).
    for (const last of [4, 5, 6, 7]) expectRoute(`10.2.0.${last}:8080`, 'CONNECT', 'allow');
    expectRoute('10.2.0.8:8080', 'CONNECT', 'deny', CI, /port 22 only/);
    expectRoute('10.2.0.5', 'GET', 'allow');
    expectRoute('11.0.0.1:22', 'CONNECT', 'deny', CI, /no policy selecting this source allows this address \(allow\.cidrs\)/);
    expectRoute('[2001:db8::1]:443', 'CONNECT', 'allow');
    expectRoute('[2001:db8::1]:22', 'CONNECT', 'deny', CI, /port 443 only/);
    expectRoute('[2001:db8::2]:443', 'CONNECT', 'deny', CI, /allow\.cidrs/);
  });

  it('a dotted quad the policies do not spell is refused, or lands inside an allowed range', () => {
    // Leading zeros: resolvers may read them as octal; the fixed octets of a range are
    // matched as text, so only the free ones can vary, and they stay in the range.
    for (const authority of ['010.1.2.3:5432', '10.01.2.3:5432', '10.1.2.3.evil.com:5432', '10.1.2:5432', '0x0a.1.2.3:5432']) {
      const envoy = checkForwardHttp(compiled, policies, { sourceIp: CI, method: 'CONNECT', authority });
      assert.equal(envoy.verdict, 'deny', authority);
    }
    const inside = checkForwardHttp(compiled, policies, { sourceIp: CI, method: 'CONNECT', authority: '10.1.02.03:5432' });
    assert.equal(inside.verdict, 'allow', 'free octets of 10.1.0.0/16 may be written any way: 10.1.2.3 or 10.1.2.3 read as octal, both inside');
  });
});
