import t from 'tap';
import { MAX_RESULT_BYTES, parseStatus } from '../../src/device-gateway/payloads.js';

// A status answer's `result` reaches the engine only as a bounded JSON object; anything else is dropped
// and the answer still counts.

const parse = (body: unknown) => parseStatus(Buffer.from(JSON.stringify(body)));

t.test('a JSON object within the bound is kept', async (t) => {
  t.same(parse({ state: 'succeeded', result: { rssi: -61 } }), { ok: true, value: { state: 'succeeded', result: { rssi: -61 } } });
});

t.test('anything else is dropped, the answer kept', async (t) => {
  for (const result of [[1, 2], 'text', 7, null, { blob: 'x'.repeat(MAX_RESULT_BYTES) }]) {
    t.same(parse({ state: 'succeeded', result }), { ok: true, value: { state: 'succeeded' }, dropped: ['result'] }, JSON.stringify(result).slice(0, 30));
  }
});
