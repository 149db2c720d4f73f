import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { PeerCertificate } from 'node:tls';
import fc from 'fast-check';
import { checkNodeIdentity, parseSubjectAltNames } from '../../src/xds/nodeIdentity.js';

const cert = (subjectaltname: string, cn: string | string[] = 'x'): PeerCertificate => ({ subjectaltname, subject: { CN: cn } }) as unknown as PeerCertificate;

describe('node identity rules', () => {
  test("Node's subjectaltname text, quoted values included, parses into the names it lists", () => {
    assert.deepEqual(parseSubjectAltNames('DNS:a.example, URI:spiffe://fleet/node/a, IP Address:127.0.0.1'), [
      { type: 'DNS', value: 'a.example' },
      { type: 'URI', value: 'spiffe://fleet/node/a' },
      { type: 'IP Address', value: '127.0.0.1' },
    ]);
    // A SAN holding ", URI:" is one quoted value, not two names.
    assert.deepEqual(parseSubjectAltNames('DNS:"evil, URI:spiffe://fleet/node/b"'), [{ type: 'DNS', value: 'evil, URI:spiffe://fleet/node/b' }]);
    assert.deepEqual(parseSubjectAltNames(undefined), []);
  });

  test('property: any list of SANs, written as Node writes them, parses back', () => {
    const value = fc.string({ minLength: 1, maxLength: 20 });
    fc.assert(
      fc.property(fc.array(fc.record({ type: fc.constantFrom('DNS', 'URI', 'email'), value }).map((r) => ({ ...r })), { maxLength: 5 }), (sans) => {
        // Node quotes a value when it holds a character that could confuse a reader (tls.js checkServerIdentity's rule).
        const text = sans.map((s) => `${s.type}:${/[\x00-\x1f",\\:]/.test(s.value) || s.value.startsWith(' ') ? JSON.stringify(s.value) : s.value}`).join(', ');
        assert.deepEqual(parseSubjectAltNames(text), sans);
      }),
    );
  });

  test('each rule accepts the node its certificate names and nothing else', () => {
    const uri = { kind: 'uri-san', prefix: 'spiffe://fleet/node/' } as const;
    assert.deepEqual(checkNodeIdentity(uri, cert('URI:spiffe://fleet/node/a'), 'a'), { ok: true });
    assert.equal(checkNodeIdentity(uri, cert('URI:spiffe://fleet/node/a'), 'b').ok, false);
    assert.equal(checkNodeIdentity(uri, cert('DNS:spiffe://fleet/node/a'), 'a').ok, false, 'the SAN type matters');
    assert.equal(checkNodeIdentity(uri, cert('URI:spiffe://other/node/a'), 'a').ok, false);
    assert.equal(checkNodeIdentity(uri, undefined, 'a').ok, false);
    assert.deepEqual(checkNodeIdentity({ kind: 'dns-san' }, cert('DNS:Host-1.example'), 'host-1.example'), { ok: true });
    assert.equal(checkNodeIdentity({ kind: 'dns-san' }, cert('DNS:host-1.example'), 'host-2.example').ok, false);
    assert.deepEqual(checkNodeIdentity({ kind: 'cn' }, cert('', 'h'), 'h'), { ok: true });
    assert.equal(checkNodeIdentity({ kind: 'cn' }, cert('', ['h', 'i']), 'h').ok, false, 'several CNs are ambiguous');
    assert.deepEqual(checkNodeIdentity({ kind: 'none' }, undefined, 'anything'), { ok: true });
  });
});
