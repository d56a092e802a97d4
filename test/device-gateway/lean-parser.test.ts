import net from 'node:net';
import { Aedes, type Client } from 'aedes';
import mqttPacket from 'mqtt-packet';
import t from 'tap';
import { leanParser } from '../../src/device-gateway/lean-parser.js';

t.test("a connection's parser gets the plain buffer list, and still reads packets split at every byte", async (t) => {
  const broker = await Aedes.createBroker();
  t.teardown(() => new Promise<void>((r) => broker.close(() => r())));
  let client: Client | undefined;
  let swapped = false;
  const server = net.createServer((socket) => {
    client = broker.handle(socket);
    swapped = leanParser(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const published = new Promise<{ topic: string; payload: string }>((resolve) =>
    broker.on('publish', (packet, from) => from && resolve({ topic: packet.topic, payload: String(packet.payload) })),
  );
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  await new Promise((r) => socket.once('connect', r));
  const payload = 'x'.repeat(300); // a remaining length of two bytes
  const bytes = Buffer.concat([
    mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'lean-1', keepalive: 30 } as mqttPacket.IConnectPacket),
    mqttPacket.generate({ cmd: 'publish', topic: 'a/b', payload, qos: 1, messageId: 7, dup: false, retain: false }),
  ]);
  for (const byte of bytes) {
    socket.write(Buffer.from([byte]));
    await new Promise((r) => setImmediate(r));
  }
  t.same(await published, { topic: 'a/b', payload }, 'the publish arrived whole');
  t.ok(swapped, 'the buffer list was swapped');
  const list = (client as unknown as { _parser: { _list: object } })._parser._list;
  t.notOk('_readableState' in list, 'the buffer list is no stream');
  t.equal((list as { length: number }).length, 0, 'and holds nothing once the packets are read');
});
