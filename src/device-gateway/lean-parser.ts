import { createRequire } from 'node:module';
import type { Client } from 'aedes';

// aedes gives every connection an mqtt-packet parser whose buffer is a `bl` BufferListStream: a whole
// readable-stream Duplex (two stream states, their listeners) that the parser never uses as a stream. The
// plain BufferList it is built on has every method the parser calls (append, consume, length, readUInt*,
// slice, toString); swapped in before the first byte arrives, a held session costs that much less.
// Resolved from aedes' own mqtt-packet, so it is the `bl` the parser was written against.
const mqttPacket = createRequire(import.meta.resolve('aedes')).resolve('mqtt-packet');
const { BufferList } = createRequire(mqttPacket)('bl') as { BufferList?: new () => { length: number } };

interface ParserInside {
  _parser?: { _list?: { length: number; append?: unknown; _readableState?: unknown } };
}

/** Gives a new connection's parser the plain buffer list; false (and nothing changed) when it is not what we know. */
export function leanParser(client: Client): boolean {
  const parser = (client as unknown as ParserInside)._parser;
  const list = parser?._list;
  if (!BufferList || !list || list.length !== 0 || typeof list.append !== 'function' || list._readableState === undefined) return false;
  parser._list = new BufferList() as NonNullable<ParserInside['_parser']>['_list'];
  return true;
}
