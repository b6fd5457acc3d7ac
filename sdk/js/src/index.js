// mesg: write Services and Applications for a mesg network in JavaScript (Node 20+, no
// dependencies). See docs/sdks.md.
//
// Service side (in a container started by a node):
//   import { Service } from 'mesg';
//   const service = Service.fromEnv();
//   service.task('echo', async (task) => task.inputs);
//   await service.listen();
//
// Application side:
//   import { Client } from 'mesg';
//   const node = new Client({ url: 'http://127.0.0.1:50052', token: '...' });
//   const e = await node.execute('echo', 'echo', { message: 'hi' }, { wait: true });
//   for await (const event of node.followEvents({ service: 'echo' })) console.log(event);
// @ts-check
export { ApiError, MesgError, TransportError } from './http.js';
export { Service, DefinitionMismatch } from './service.js';
export { Client, DEFAULT_NODE } from './application.js';
export { readDefinition, sectionKeys } from './definition.js';
