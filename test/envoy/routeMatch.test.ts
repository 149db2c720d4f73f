// The model of Envoy's HTTP route selection (src/envoy/routeMatch.ts) on the cases
// Envoy's own tests pin down (test/common/router/config_impl_test.cc: wildcard
// precedence, longest wildcard first, no empty-string wildcard, ports, CONNECT), and
// against a brute-force reading of the documented rules on random domain sets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { RouteConfigurationJson, RouteJson, VirtualHostJson } from '../../src/envoy/routeConfig.js';
import { findRouteConfigProblems, hostForMatching, selectRoute, selectVirtualHost } from '../../src/envoy/routeMatch.js';

const ok = (cluster: string): RouteJson => ({ match: { prefix: '/' }, route: { cluster } });
const vh = (name: string, domains: string[], routes: RouteJson[] = [ok(name)]): VirtualHostJson => ({ name, domains, routes });
const config = (...virtualHosts: VirtualHostJson[]): RouteConfigurationJson => ({ virtualHosts });
const pick = (c: RouteConfigurationJson, host: string | undefined) => selectVirtualHost(c, host).virtualHost?.name;

describe('routeMatch: virtual host selection', () => {
  const c = config(
    vh('exact', ['www.lyft.com', 'W.Example.COM']),
    vh('suffix-long', ['*-bar.baz.com']),
    vh('suffix', ['*.baz.com']),
    vh('prefix', ['foo.*']),
    vh('prefix-long', ['foo.bar.*']),
    vh('default', ['*']),
  );

  it('exact first, then the longest suffix wildcard, then the longest prefix wildcard, then "*"', () => {
    assert.equal(pick(c, 'www.lyft.com'), 'exact');
    assert.equal(pick(c, 'foo-bar.baz.com'), 'suffix-long');
    assert.equal(pick(c, 'x.baz.com'), 'suffix');
    assert.equal(pick(c, 'foo.bar.baz'), 'prefix-long');
    assert.equal(pick(c, 'foo.qux'), 'prefix');
    assert.equal(pick(c, 'other.org'), 'default');
  });

  it('a suffix wildcard beats a prefix wildcard even when shorter', () => {
    assert.equal(pick(c, 'foo.bar.baz.com'), 'suffix');
  });

  it('a wildcard never matches the empty string', () => {
    assert.equal(pick(c, '.baz.com'), 'default');
    assert.equal(pick(c, '-bar.baz.com'), 'suffix');
    assert.equal(pick(c, 'foo.'), 'default');
  });

  it('is case-insensitive on both sides', () => {
    assert.equal(pick(c, 'WWW.LYFT.COM'), 'exact');
    assert.equal(pick(c, 'w.example.com'), 'exact');
  });

  it('keeps the port unless ignore_port_in_host_matching', () => {
    assert.equal(pick(c, 'www.lyft.com:443'), 'default');
    assert.equal(pick({ ...c, ignorePortInHostMatching: true }, 'www.lyft.com:443'), 'exact');
    assert.equal(hostForMatching('[2001:db8::1]:443', true), '[2001:db8::1]');
    assert.equal(hostForMatching('[2001:db8::1]', true), '[2001:db8::1]');
    assert.equal(hostForMatching('a.com:', true), 'a.com');
  });

  it('without a Host there is no virtual host, except in the "*"-only fast path', () => {
    assert.equal(pick(c, undefined), undefined);
    assert.equal(pick(config(vh('only', ['*'])), undefined), 'only');
  });

  it('finds what Envoy rejects: duplicate domains and a second "*"', () => {
    assert.deepEqual(findRouteConfigProblems(c), []);
    assert.equal(findRouteConfigProblems(config(vh('a', ['x.com']), vh('b', ['X.com']))).length, 1);
    assert.equal(findRouteConfigProblems(config(vh('a', ['*']), vh('b', ['*']))).length, 1);
    assert.equal(findRouteConfigProblems(config(vh('a', ['*.x.com', 'y.*']), vh('b', ['*.x.com']))).length, 1);
  });
});

describe('routeMatch: routes and CONNECT', () => {
  const connectRoute: RouteJson = { match: { connectMatcher: {} }, route: { cluster: 'dfp', upgradeConfigs: [{ upgradeType: 'CONNECT', connectConfig: {} }] } };
  const deny: RouteJson = { match: { prefix: '' }, directResponse: { status: 403, body: { inlineString: 'no' } } };
  const c = config(vh('all', ['*'], [connectRoute, ok('plain'), deny]));

  it('connect_matcher takes CONNECT only; a pathless CONNECT skips path routes', () => {
    const connect = selectRoute(c, { method: 'CONNECT', authority: 'a.com:443' });
    assert.deepEqual(connect.outcome, { kind: 'cluster', cluster: 'dfp', connect: 'terminated' });
    const get = selectRoute(c, { method: 'GET', authority: 'a.com', path: '/x' });
    assert.deepEqual(get.outcome, { kind: 'cluster', cluster: 'plain', connect: 'none' });
  });

  it('a CONNECT meeting only path routes gets no route, or 403 when CONNECT is not enabled anywhere', () => {
    const pathOnly = config(vh('all', ['*'], [ok('plain')]));
    assert.equal(selectRoute(pathOnly, { method: 'CONNECT', authority: 'a.com:443' }).outcome.kind, 'upgrade-refused');
    assert.equal(selectRoute(pathOnly, { method: 'CONNECT', authority: 'a.com:443' }, [{ upgradeType: 'CONNECT' }]).outcome.kind, 'no-route');
  });

  it('a direct response to a CONNECT needs CONNECT enabled on the connection manager', () => {
    const denyConnect = config(vh('all', ['*'], [{ match: { connectMatcher: {} }, directResponse: { status: 403, body: { inlineString: 'nope' } } }]));
    assert.equal(selectRoute(denyConnect, { method: 'CONNECT', authority: 'a.com:443' }).outcome.kind, 'upgrade-refused');
    assert.deepEqual(selectRoute(denyConnect, { method: 'CONNECT', authority: 'a.com:443' }, [{ upgradeType: 'CONNECT' }]).outcome, { kind: 'direct-response', status: 403, body: 'nope' });
  });

  it('a route-level enabled: false refuses CONNECT whatever the connection manager says', () => {
    const off = config(vh('all', ['*'], [{ match: { connectMatcher: {} }, route: { cluster: 'x', upgradeConfigs: [{ upgradeType: 'connect', enabled: false }] } }]));
    assert.equal(selectRoute(off, { method: 'CONNECT', authority: 'a:1' }, [{ upgradeType: 'CONNECT' }]).outcome.kind, 'upgrade-refused');
  });

  it('header matchers: safe_regex is a full match; invert_match; suffix', () => {
    const r = (headers: RouteJson['match']['headers']): RouteConfigurationJson => config(vh('all', ['*'], [{ match: { prefix: '/', headers }, route: { cluster: 'hit' } }, deny]));
    const req = { method: 'GET', authority: '10.1.2.3:80', path: '/' };
    assert.equal(selectRoute(r([{ name: ':authority', safeRegexMatch: { regex: '10\\.1\\.2\\.3' } }]), req).outcome.kind, 'direct-response');
    assert.equal(selectRoute(r([{ name: ':authority', safeRegexMatch: { regex: '10\\.1\\.2\\.3(?::80)?' } }]), req).outcome.kind, 'cluster');
    assert.equal(selectRoute(r([{ name: ':authority', stringMatch: { suffix: ':80' }, invertMatch: true }]), req).outcome.kind, 'direct-response');
    assert.equal(selectRoute(r([{ name: 'x-missing', presentMatch: false }]), req).outcome.kind, 'cluster');
  });
});

// A brute-force reading of the rules: every domain that matches, ranked by class then length.
function bruteForce(virtualHosts: VirtualHostJson[], host: string): string | undefined {
  const h = host.toLowerCase();
  let best: { rank: number; length: number; name: string } | undefined;
  for (const v of virtualHosts) {
    for (const raw of v.domains) {
      const d = raw.toLowerCase();
      let rank: number;
      let length = 0;
      if (d === '*') rank = 0;
      else if (d.startsWith('*')) {
        if (!(h.length > d.length - 1 && h.endsWith(d.slice(1)))) continue;
        rank = 2;
        length = d.length - 1;
      } else if (d.endsWith('*')) {
        if (!(h.length > d.length - 1 && h.startsWith(d.slice(0, -1)))) continue;
        rank = 1;
        length = d.length - 1;
      } else {
        if (d !== h) continue;
        rank = 3;
      }
      if (!best || rank > best.rank || (rank === best.rank && length > best.length)) best = { rank, length, name: v.name };
    }
  }
  return best?.name;
}

describe('routeMatch: property', () => {
  const label = fc.constantFrom('a', 'b', 'ab', 'x-a');
  const name = fc.array(label, { minLength: 1, maxLength: 3 }).map((l) => l.join('.'));
  const domain = fc.oneof(name, name.map((n) => `*.${n}`), name.map((n) => `*${n}`), name.map((n) => `${n}.*`), name.map((n) => `${n}*`), fc.constant('*'));
  it('selection equals the brute-force ranking (exact > longest suffix > longest prefix > "*")', () => {
    fc.assert(
      fc.property(fc.array(fc.uniqueArray(domain, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 4 }), fc.array(name, { minLength: 1, maxLength: 10 }), (domainSets, hosts) => {
        const hostsConfig = config(...domainSets.map((d, i) => vh(`v${i}`, d)));
        if (findRouteConfigProblems(hostsConfig).length > 0) return;
        for (const host of [...hosts, ...hosts.map((h) => `q.${h}`), ...hosts.map((h) => `${h}.q`)]) {
          assert.equal(pick(hostsConfig, host), bruteForce(hostsConfig.virtualHosts, host), host);
        }
      }),
      { seed: 4242, numRuns: 400 },
    );
  });
});
