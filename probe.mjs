// scratch probe (not committed): server CPU per kind of hostile client.
import { Child } from './dist/bench/fanout.js';
const { child: srv, hello } = await Child.start('./fleetServer.js', ['0', '2000', JSON.stringify({ stuckWriteMs: 10_000 })]);
const address = `127.0.0.1:${hello.xdsPort}`;
const cpu = async () => (await srv.ask({ usage: true })).cpuMicros / 1000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
for (const [name, spec] of [
  ['nothing', { stuck: 0, flooders: 0, floodRequests: 0, toggles: 0 }],
  ['nothing', { stuck: 0, flooders: 0, floodRequests: 0, toggles: 0 }],
  ['stuck 100', { stuck: 100, flooders: 0, floodRequests: 0, toggles: 0 }],
  ['flood 5x1500 (+5 toggle streams, 0 toggles)', { stuck: 0, flooders: 5, floodRequests: 1500, toggles: 0 }],
  ['toggle 5x1000 (+5 flood streams, 1 request)', { stuck: 0, flooders: 5, floodRequests: 1, toggles: 1000 }],
]) {
  await sleep(500);
  const c0 = await cpu();
  const { child } = await Child.start('./hostileClients.js', []);
  await child.ask({ start: { address, ...spec } });
  await sleep(2000);
  const c1 = await cpu();
  console.log(name, 'server CPU ms', (c1 - c0).toFixed(0));
  await child.stop();
}
await srv.stop();
