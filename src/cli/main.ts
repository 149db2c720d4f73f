#!/usr/bin/env node
// egress-xds: one binary, one sub-command per job. Each sub-command module is
// loaded only when used, so `agent` on a host never loads the server.
const USAGE = `usage: egress-xds <command> [options]

commands:
  serve       run the xDS control plane and the admin API
  bootstrap   print a minimal Envoy bootstrap that points an Envoy at the control plane
  agent       install|uninstall|status|run the host's TPROXY rules and policy routing
  policy      list|get|put|delete|check|suggest policies through the admin API
  denials     what Envoy refused, and why (--follow for a live feed)
  store       migrate policies and history between the file store and etcd

Run "egress-xds <command> --help" for a command's options.`;

type CommandMain = (argv: string[]) => Promise<number>;

const commands: Record<string, () => Promise<CommandMain>> = {
  serve: async () => (await import('./serve.js')).serveCommand,
  bootstrap: async () => (await import('./bootstrap.js')).bootstrapCommand,
  agent: async () => (await import('./agent.js')).agentCommand,
  policy: async () => (await import('./policy.js')).policyCommand,
  denials: async () => (await import('./denials.js')).denialsCommand,
  store: async () => (await import('./store.js')).storeCommand,
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  const load = commands[name];
  if (!load) {
    process.stderr.write(`egress-xds: unknown command "${name}"\n\n${USAGE}\n`);
    return 2;
  }
  return (await load())(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`egress-xds: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
