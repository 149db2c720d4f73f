// The egress listener's bytes, through the fast encoder: its memoised fragments
// (hardenedMatcher.ts, hardenedListener.ts) are copied, not walked again.
import type { ListenerJson } from '../envoy/resources.js';
import { fastEncodeProtoJson } from '../envoy/fastEncode.js';
import { TypeUrl } from '../envoy/typeUrls.js';

export function encodeListener(listener: ListenerJson): Uint8Array {
  return fastEncodeProtoJson(TypeUrl.Listener, listener);
}
