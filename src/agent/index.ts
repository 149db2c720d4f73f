// What `egress-xds agent` (src/cli/agent.ts) uses of the host agent. Nothing
// here imports the server; tests reach the modules directly.
export { type AgentConfig, buildConfig } from './config.js';
export { type AgentContext, DEFAULT_STATE_DIR } from './context.js';
export { dryRunInstall, dryRunUninstall, install, uninstall } from './apply.js';
export { AgentError, FlagError, formatCommand } from './errors.js';
export { preflight } from './preflight.js';
export { currentPlan, runRepairLoop } from './repair.js';
export { execaRunner } from './runner.js';
export { formatStatus, status, statusExitCode } from './status.js';
export { RP_FILTER_WARNING } from './parts/rpFilter.js';
export type { Step } from './steps.js';
