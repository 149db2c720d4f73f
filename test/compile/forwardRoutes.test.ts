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

describe('forward proxy: loop guard and audit, named examples', () => {
  it("the proxy's own ports are refused on any host, whatever a broad cidr rule allows, with the ports it is configured with", async () => {
    const { forwardLoopPorts } = await import('../../src/compile/forwardProxy.js');
    const broad: Policy[] = [{ name: 'broad', allow: { sni: ['*.example.com'], cidrs: [{ cidr: '0.0.0.0/0' }] } }];
    const options = { httpPort: 3128, tlsPort: 3129, dnsPort: 5353 };
    // Transparent listener on 15006 beside the forward proxy.
    const loopPorts = forwardLoopPorts(options, 15006);
    assert.deepEqual(loopPorts, [3128, 3129, 5353, 15006]);
    const withTransparent = compileEgress(broad, { forwardProxy: options, port: 15006 });
    for (const authority of ['127.0.0.1:3128', '10.0.0.1:3129', '10.0.0.1:5353', '192.0.2.1:15006', 'a.example.com:3128', '[::1]:3129']) {
      for (const method of ['CONNECT', 'GET']) {
        const request = { sourceIp: CI, method, authority };
        const envoy = checkForwardHttp(withTransparent, broad, request, undefined, loopPorts);
        assert.equal(envoy.verdict, 'deny', `${method} ${authority}: ${envoy.path.join(' / ')}`);
        assert.match(envoy.body ?? '', /egress proxy's own \(a loop\)/);
        assert.deepEqual(envoy.logs?.map((l) => l['egress.reason']), ['loop']);
        assert.deepEqual(intendedForwardRoute(broad, request, undefined, loopPorts), { verdict: 'deny', reason: 'loop' });
      }
    }
    // Other ports stay allowed by the broad rule; the default ports are no loop here.
    for (const authority of ['10.0.0.1:10000', '10.0.0.1:15001', '10.0.0.1:443']) {
      assert.equal(checkForwardHttp(withTransparent, broad, { sourceIp: CI, method: 'CONNECT', authority }, undefined, loopPorts).verdict, 'allow', authority);
    }
    // Without the transparent listener and with the DNS port off, only the forward ports loop.
    assert.deepEqual(forwardLoopPorts({ ...options, dnsPort: 0 }, undefined), [3128, 3129]);
  });

  it('audit: what the policies refuse is forwarded and logged would-deny, except loops and a CONNECT naming no port', () => {
    const audited: Policy[] = [{ name: 'trial', sources: ['172.31.9.0/24'], mode: 'audit', allow: { sni: ['github.com'] } }];
    const compiledAudit = compileEgress(audited, { forwardProxy: {} });
    const source = '172.31.9.5';
    const loopPorts = [10000, 10001, 15001, 15053];
    const check = (method: string, authority: string) => checkForwardHttp(compiledAudit, audited, { sourceIp: source, method, authority }, undefined, loopPorts);
    for (const [method, authority] of [['CONNECT', 'example.org:443'], ['CONNECT', 'github.com:8443'], ['GET', 'example.org'], ['CONNECT', '10.1.2.3:22']] as const) {
      const envoy = check(method, authority);
      assert.equal(envoy.verdict, 'allow', `${method} ${authority}: ${envoy.path.join(' / ')}`);
      assert.deepEqual(envoy.logs, [{ 'egress.verdict': 'would-deny', 'egress.reason': 'no-policy', 'egress.listener': 'forward_http', 'egress.chain': 'forward_http|172.31.9.0/24', 'egress.policy': 'trial' }]);
    }
    assert.equal(check('CONNECT', 'example.org:10000').verdict, 'deny');
    assert.equal(check('CONNECT', '10.1.2.3').verdict, 'deny');
    assert.deepEqual(check('CONNECT', 'github.com:443').logs, []);
    // Another source is not audited.
    assert.equal(checkForwardHttp(compiledAudit, audited, { sourceIp: '172.31.8.5', method: 'CONNECT', authority: 'example.org:443' }).verdict, 'deny');
  });
});

describe('forward proxy: the loop guard follows serve --dns-port', () => {
  it('the DNS listener port of the compile options is refused; port 0 (no DNS listener) frees 15053', () => {
    const broad: Policy[] = [{ name: 'broad', allow: { sni: [], cidrs: [{ cidr: '0.0.0.0/0' }] } }];
    const verdict = (dnsPort: number, authority: string) =>
      checkForwardHttp(compileEgress(broad, { forwardProxy: {}, transparent: false, dns: { port: dnsPort } }), broad, { sourceIp: CI, method: 'CONNECT', authority }).verdict;
    assert.equal(verdict(5353, '10.0.0.1:5353'), 'deny');
    assert.equal(verdict(5353, '10.0.0.1:15053'), 'allow');
    assert.equal(verdict(0, '10.0.0.1:15053'), 'allow');
    assert.equal(verdict(0, '10.0.0.1:10000'), 'deny');
  });
});
