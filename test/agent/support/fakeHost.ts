// A Runner that plays a host where nothing of the agent exists yet, records
// every command, and fails the commands a test picks. For rollback tests
// without touching any system.
import { formatCommand } from '../../../src/agent/errors.js';
import type { Command, CommandResult, Runner } from '../../../src/agent/runner.js';

export interface FakeHost extends Runner {
  /** Every command run, formatted, in order. */
  readonly log: string[];
}

export function fakeHost(fail: (command: string, input: string | undefined) => CommandResult | undefined): FakeHost {
  const log: string[] = [];
  const ok = (stdout = ''): CommandResult => ({ exitCode: 0, stdout, stderr: '' });
  return {
    log,
    readFile: async () => undefined,
    run: async (command: Command) => {
      const text = formatCommand(command);
      log.push(text);
      const failure = fail(text, command.input);
      if (failure) return failure;
      if (/ -S EGRESS_XDS(_GUARD|_UPSTREAM|_CAP)?$/.test(text)) return { exitCode: 1, stdout: '', stderr: 'iptables: No chain/target/match by that name.' };
      const hook = / -S (PREROUTING|INPUT|FORWARD|OUTPUT)$/.exec(text);
      if (hook) return ok(`-P ${hook[1]} ACCEPT\n`);
      if (/ -C /.test(text)) return { exitCode: 1, stdout: '', stderr: 'iptables: Bad rule' };
      if (/^ip( -6)? -j (rule|route) show/.test(text)) return ok('[]\n');
      if (/^nft -j list table/.test(text)) return { exitCode: 1, stdout: '', stderr: 'Error: No such file or directory' };
      if (text === 'sysctl -n net.ipv4.conf.all.rp_filter') return ok('2\n');
      return ok();
    },
  };
}
