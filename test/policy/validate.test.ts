import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validatePolicyName, validatePolicySpec } from '../../src/policy/validate.js';

const allow = (sni: unknown) => ({ allow: { sni } });

// [what, body, field, message pattern]
const badSpecs: Array<[string, unknown, string, RegExp]> = [
  ['body not an object', [], '', /must be an object, got an array/],
  ['body null', null, '', /must be an object, got null/],
  ['body a string', 'x', '', /must be an object, got a string/],
  ['unknown top-level field', { allow: { sni: [] }, name: 'x' }, 'name', /unknown field; expected sources, nodes, upstream, mode, log, allow/],
  ['upstream not a choice', { upstream: 'dns', allow: {} }, 'upstream', /"dns" is not one of "name", "original-destination"/],
  ['upstream not a string', { upstream: 1, allow: {} }, 'upstream', /must be a string, got a number/],
  ['mode not a choice', { mode: 'learn', allow: {} }, 'mode', /"learn" is not one of "enforce", "audit"/],
  ['log not a choice', { log: 'none', allow: {} }, 'log', /"none" is not one of "denied", "all"/],
  ['log not a string', { log: true, allow: {} }, 'log', /must be a string, got a boolean/],
  ['allow missing', { sources: ['10.0.0.0/8'] }, 'allow', /is required/],
  ['allow not an object', { allow: ['a.com'] }, 'allow', /must be an object, got an array/],
  ['unknown allow field', { allow: { sni: [], ports: [1] } }, 'allow.ports', /unknown field; expected sni, cidrs/],
  ['sources not an array', { sources: '10.0.0.0/8', allow: {} }, 'sources', /must be an array, got a string/],
  ['sources empty', { sources: [], allow: {} }, 'sources', /must not be empty; leave sources out for every source/],
  ['source not a CIDR', { sources: ['10.0.0.0/8', 'ten'], allow: {} }, 'sources[1]', /"ten" is not an IPv4 or IPv6 address/],
  ['source a number', { sources: [10], allow: {} }, 'sources[0]', /must be a string, got a number/],
  ['source prefix too long', { sources: ['10.0.0.0/33'], allow: {} }, 'sources[0]', /prefix length "33" must be 0 to 32/],
  ['source host bits', { sources: ['10.1.2.3/8'], allow: {} }, 'sources[0]', /host bits set; the network is "10\.0\.0\.0\/8" \(or write "10\.1\.2\.3\/32" for one host\)/],
  ['source v6 host bits', { sources: ['2001:db8::1/32'], allow: {} }, 'sources[0]', /the network is "2001:db8::\/32"/],
  ['source with spaces', { sources: [' 10.0.0.0/8'], allow: {} }, 'sources[0]', /must be a CIDR/],
  ['nodes empty', { nodes: [], allow: {} }, 'nodes', /must not be empty; leave nodes out for every node/],
  ['node glob empty', { nodes: [''], allow: {} }, 'nodes[0]', /must not be empty/],
  ['node glob bad char', { nodes: ['host/1'], allow: {} }, 'nodes[0]', /may hold only letters/],
  ['node glob space', { nodes: ['host 1'], allow: {} }, 'nodes[0]', /may hold only letters/],
  ['node not a string', { nodes: [{}], allow: {} }, 'nodes[0]', /must be a string, got an object/],
  ['sni not an array', allow('a.com'), 'allow.sni', /must be an array/],
  ['sni not a string', allow([1]), 'allow.sni[0]', /must be a string, got a number/],
  ['sni empty', allow(['']), 'allow.sni[0]', /must not be empty/],
  ['sni IPv4 literal', allow(['a.com', '10.0.0.1']), 'allow.sni[1]', /is an IP address, not a DNS name; allow addresses with allow.cidrs/],
  ['sni IPv6 literal', allow(['::1']), 'allow.sni[0]', /is an IP address/],
  ['sni bracketed IPv6', allow(['[2001:db8::1]']), 'allow.sni[0]', /is an IP address/],
  ['sni numeric TLD', allow(['10.0.0.300']), 'allow.sni[0]', /last label is all digits/],
  ['sni space', allow(['a .com']), 'allow.sni[0]', /must not contain spaces/],
  ['sni tab', allow(['a.com\t']), 'allow.sni[0]', /must not contain spaces/],
  ['sni label 64', allow([`${'a'.repeat(64)}.com`]), 'allow.sni[0]', /is 64 characters; a label has at most 63/],
  ['sni name 254', allow([`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(62)}`]), 'allow.sni[0]', /is 254 characters; a DNS name has at most 253/],
  ['sni lone star', allow(['*']), 'allow.sni[0]', /a lone "\*" would allow every name/],
  ['sni partial wildcard', allow(['a*.b.com']), 'allow.sni[0]', /partial or inner wildcards/],
  ['sni inner wildcard', allow(['a.*.com']), 'allow.sni[0]', /partial or inner wildcards/],
  ['sni double wildcard', allow(['*.*.com']), 'allow.sni[0]', /partial or inner wildcards/],
  ['sni suffix wildcard', allow(['example.*']), 'allow.sni[0]', /partial or inner wildcards/],
  ['sni star without dot', allow(['*example.com']), 'allow.sni[0]', /partial or inner wildcards/],
  ['sni empty label', allow(['a..com']), 'allow.sni[0]', /empty label/],
  ['sni leading dot', allow(['.a.com']), 'allow.sni[0]', /empty label/],
  ['sni two trailing dots', allow(['a.com..']), 'allow.sni[0]', /empty label/],
  ['sni leading hyphen', allow(['-a.com']), 'allow.sni[0]', /label "-a" must not start or end with "-"/],
  ['sni trailing hyphen', allow(['a-.com']), 'allow.sni[0]', /label "a-" must not start or end with "-"/],
  ['sni underscore', allow(['a_b.com']), 'allow.sni[0]', /label "a_b" may hold only letters, digits and "-"/],
  ['sni non-ASCII', allow(['bücher.de']), 'allow.sni[0]', /must be ASCII; .*xn-- form \("xn--bcher-kva\.de"\)/],
  ['sni URL', allow(['https://a.com']), 'allow.sni[0]', /may hold only letters/],
  ['sni with port', allow(['a.com:443']), 'allow.sni[0]', /may hold only letters/],
  ['cidrs not an array', { allow: { cidrs: {} } }, 'allow.cidrs', /must be an array/],
  ['cidr entry a string', { allow: { cidrs: ['10.0.0.0/8'] } }, 'allow.cidrs[0]', /must be an object, got a string/],
  ['cidr missing', { allow: { cidrs: [{ ports: [443] }] } }, 'allow.cidrs[0].cidr', /is required/],
  ['cidr unknown field', { allow: { cidrs: [{ cidr: '10.0.0.0/8', port: 443 }] } }, 'allow.cidrs[0].port', /unknown field; expected cidr, ports/],
  ['cidr host bits', { allow: { cidrs: [{ cidr: '192.168.1.1/24' }] } }, 'allow.cidrs[0].cidr', /the network is "192\.168\.1\.0\/24"/],
  ['ports empty', { allow: { cidrs: [{ cidr: '10.0.0.0/8', ports: [] }] } }, 'allow.cidrs[0].ports', /must not be empty; leave allow.cidrs\[0\].ports out for every port/],
  ['port zero', { allow: { cidrs: [{ cidr: '10.0.0.0/8', ports: [443, 0] }] } }, 'allow.cidrs[0].ports[1]', /integer port 1 to 65535, got 0/],
  ['port too big', { allow: { cidrs: [{ cidr: '10.0.0.0/8', ports: [65536] }] } }, 'allow.cidrs[0].ports[0]', /got 65536/],
  ['port fraction', { allow: { cidrs: [{ cidr: '10.0.0.0/8', ports: [44.3] }] } }, 'allow.cidrs[0].ports[0]', /got 44.3/],
  ['port string', { allow: { cidrs: [{ cidr: '10.0.0.0/8', ports: ['443'] }] } }, 'allow.cidrs[0].ports[0]', /got "443"/],
  ['second cidr bad', { allow: { cidrs: [{ cidr: '10.0.0.0/8' }, { cidr: '1.2.3.4/40' }] } }, 'allow.cidrs[1].cidr', /prefix length "40"/],
];

for (const [what, body, field, message] of badSpecs) {
  test(`validatePolicySpec refuses: ${what}`, () => {
    const result = validatePolicySpec(body);
    assert.equal(result.ok, false, JSON.stringify(result));
    if (result.ok) return;
    assert.equal(result.error.field, field);
    assert.match(result.error.message, message);
  });
}

test('validatePolicySpec normalises: case, trailing dot, order, duplicates, merges cidrs', () => {
  const result = validatePolicySpec({
    allow: {
      sni: ['WWW.Example.COM.', '*.Example.com', 'www.example.com', 'a.example.com', 'xn--bcher-kva.de'],
      cidrs: [
        { cidr: '2001:DB8::/32', ports: [443] },
        { cidr: '10.0.0.0/8', ports: [8443, 443, 443] },
        { cidr: '10.0.0.0/8', ports: [80] },
        { cidr: '192.168.0.0/16' },
        { cidr: '192.168.0.0/16', ports: [22] },
        { cidr: '10.0.0.1' },
      ],
    },
    nodes: ['host-b', 'host-*', 'host-b'],
    sources: ['172.31.0.0/16', '10.0.0.0/8', '172.31.0.0/16', '2001:db8::/48', '10.0.0.5'],
  });
  assert.ok(result.ok);
  assert.deepEqual(result.value, {
    sources: ['10.0.0.0/8', '10.0.0.5/32', '172.31.0.0/16', '2001:db8::/48'],
    nodes: ['host-*', 'host-b'],
    allow: {
      sni: ['*.example.com', 'a.example.com', 'www.example.com', 'xn--bcher-kva.de'],
      cidrs: [
        { cidr: '10.0.0.0/8', ports: [80, 443, 8443] },
        { cidr: '10.0.0.1/32' },
        { cidr: '192.168.0.0/16' },
        { cidr: '2001:db8::/32', ports: [443] },
      ],
    },
  });
  // Key order is canonical too, so equal meaning serialises equally.
  assert.deepEqual(Object.keys(result.value), ['sources', 'nodes', 'allow']);
});

test('validatePolicySpec accepts the edges', () => {
  const ok = (body: unknown) => {
    const result = validatePolicySpec(body);
    assert.ok(result.ok, JSON.stringify(result));
    return result.value;
  };
  assert.deepEqual(ok({ allow: {} }), { allow: { sni: [] } }); // an empty allowlist is legal: it allows nothing
  assert.deepEqual(ok({ allow: { sni: [] } }), { allow: { sni: [] } });
  assert.deepEqual(ok({ allow: { cidrs: [] } }), { allow: { sni: [], cidrs: [] } });
  ok(allow([`${'a'.repeat(63)}.com`]));
  ok(allow([`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`])); // 253
  ok(allow(['*.com', 'localhost', 'a-b.c0m', '1password.com', 'xn--80ak6aa92e.com']));
  ok({ sources: ['0.0.0.0/0', '::/0'], nodes: ['*', 'a:b.c_d-e'], allow: { cidrs: [{ cidr: '0.0.0.0/0', ports: [1, 65535] }] } });
  // Defaults are stored absent: the same meaning, the same spec.
  assert.deepEqual(ok({ upstream: 'name', mode: 'enforce', log: 'denied', allow: {} }), { allow: { sni: [] } });
  assert.deepEqual(ok({ log: 'all', allow: {} }), { log: 'all', allow: { sni: [] } });
  assert.deepEqual(ok({ mode: 'audit', upstream: 'original-destination', allow: {} }), {
    upstream: 'original-destination',
    mode: 'audit',
    allow: { sni: [] },
  });
});

test('validatePolicyName', () => {
  for (const good of ['a', 'github', 'team-a.web_1', '0', 'a'.repeat(63)]) assert.deepEqual(validatePolicyName(good), { ok: true, value: good });
  const bad: Array<[unknown, RegExp]> = [
    ['', /required/], [undefined, /required/], [7, /required/],
    ['a'.repeat(64), /64 characters; at most 63/],
    ['Github', /lower-case/], ['-a', /starting and ending/], ['a-', /starting and ending/], ['a b', /lower-case/],
    ['a/b', /lower-case/], ['..', /lower-case/], ['é', /lower-case/],
  ];
  for (const [name, message] of bad) {
    const result = validatePolicyName(name);
    assert.ok(!result.ok, String(name));
    assert.equal(result.error.field, 'name');
    assert.match(result.error.message, message);
  }
});
