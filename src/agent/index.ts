// The host agent's public surface. Nothing here imports the server.
export { type AgentConfig, type AgentFlags, type Backend, buildConfig, defaultConfig, DEFAULTS, IPTABLES_CHAIN, NFT_TABLE } from './config.js';
export { type AgentContext, DEFAULT_STATE_DIR } from './context.js';
export { dryRunInstall, dryRunUninstall, install, reconcile, uninstall } from './apply.js';
export { AgentError, FlagError, formatCommand } from './errors.js';
export { readHostAddresses } from './hostAddresses.js';
export { buildPlan, type Plan } from './plan.js';
export { preflight } from './preflight.js';
export { currentPlan, repairOnce, runRepairLoop } from './repair.js';
export { execaRunner, type Runner } from './runner.js';
export { formatStatus, status, statusExitCode, type StatusReport } from './status.js';
export { RP_FILTER_WARNING } from './parts/rpFilter.js';
export { renderNftScript } from './render/nftables.js';
export type { Step } from './steps.js';
