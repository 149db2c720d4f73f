// The compile room's surface: policies → Envoy resources, and the check behind POST /v1/check.
export { compileEgress, COMPILE_PROFILES, type CompileOptions, type CompiledEgress, type CompileProfile } from './compileEgress.js';
export { checkConnection, type CheckResult, type CheckUpstream } from './check.js';
export { intendedRoute, type IntendedRoute, type RefusalReason } from './route.js';
export { DEFAULT_UPSTREAM_MARK, SPECIAL_RANGES, checkUpstreamMark } from './specialAddresses.js';
export * from './names.js';
export { checkForwardHttp, checkForwardTls, type ForwardCheckResult, type ForwardHttpRequest, type ForwardListenerKind } from './forwardCheck.js';
export { intendedForwardRoute, type ForwardRequest, type ForwardRoute } from './forwardRoute.js';
export type { ForwardProxyOptions } from './forwardProxy.js';
export * from './forwardNames.js';
