// js-echo: the JavaScript SDK's example service. `echo` returns its inputs (and the
// language), `tick` emits a `tick` event. The SDK (sdk/js/src) is copied beside this file
// as mesg/ when the service is built (testnet/build.sh services).
import { Service } from './mesg/index.js';

const service = Service.fromEnv();
let ticks = 0;

service.task('echo', (task) => ({ ...task.inputs, language: 'javascript' }));

service.task('tick', async (task) => {
  const count = ++ticks;
  const data = { count };
  if (task.inputs.value !== undefined && task.inputs.value !== null) data.value = task.inputs.value;
  await service.emit('tick', data); // attributed to this execution
  return { count };
});

await service.listen();
