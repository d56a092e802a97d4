import mqttPacket from 'mqtt-packet';
import t from 'tap';
import { FrameLengthGuard } from '../../src/device-gateway/frame-guard.js';

const publish = (bytes: number) =>
  mqttPacket.generate({ cmd: 'publish', topic: 'devices/0C11050B9814/x', payload: Buffer.alloc(bytes), qos: 0, dup: false, retain: false });

t.test('frames within the limit pass, however they are split', async (t) => {
  const guard = new FrameLengthGuard(70_000);
  const stream = Buffer.concat([publish(10), publish(65_536), mqttPacket.generate({ cmd: 'pingreq' }), publish(300)]);
  const verdicts = new Set<number>();
  for (let i = 0; i < stream.length; i += 7) verdicts.add(guard.feed(stream.subarray(i, i + 7)));
  t.same([...verdicts], [-1], 'every 7-byte slice accepted');
});

t.test('a frame declaring more than the limit is caught at its header', async (t) => {
  const guard = new FrameLengthGuard(70_000);
  t.equal(guard.feed(publish(100)), -1);
  const big = publish(100_000);
  t.ok(guard.feed(big.subarray(0, 5)) > 70_000, 'refused before the body arrives');
});

t.test('a remaining length longer than four bytes is malformed', async (t) => {
  const guard = new FrameLengthGuard(Number.MAX_SAFE_INTEGER);
  t.ok(guard.feed(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x80, 0x01])) >= 0);
});
