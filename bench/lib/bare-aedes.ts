import net from 'node:net';
import { Aedes } from 'aedes';

// Reference broker for the gateway benchmark: aedes with default options, no authentication, no presence.
const port = Number(process.argv[2]);
const broker = await Aedes.createBroker();
const server = net.createServer(broker.handle);
server.listen({ port, host: '0.0.0.0', backlog: 4096 }, () => process.send?.({ type: 'listening' }));
process.on('SIGTERM', () => server.close(() => broker.close(() => process.exit(0))));
process.on('disconnect', () => process.exit(0)); // the benchmark is gone
