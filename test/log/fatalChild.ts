// A process that logs through the project's logger and then dies at once, in
// the way argv[2] says; test/log/log.test.ts checks that its last line arrived.
import { createLogger } from '../../src/log.js';

const how = process.argv[2];
const lines = Number(process.argv[3] ?? '1');
const log = createLogger();
const padding = 'x'.repeat(1000);
for (let i = 1; i < lines; i++) log.info('filler', { i, padding });
log.error('last words', { how, lines });
switch (how) {
  case 'exit':
    process.exit(3);
    break;
  case 'throw':
    throw new Error('fatal');
  case 'sigkill':
    // No exit hook, no flush: whatever was not yet written is lost.
    process.kill(process.pid, 'SIGKILL');
    break;
  case 'abort':
    process.abort();
}
