// The compile room's surface: policies → Envoy resources, and the check behind POST /v1/check.
export { compileEgress, type CompileOptions, type CompiledEgress } from './compileEgress.js';
export { checkConnection, type CheckResult } from './check.js';
export * from './names.js';
