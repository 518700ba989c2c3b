// Parses bytes with a fresh mqtt-packet parser, optionally guarded first by one of the broker's
// parser workarounds (src/broker/upstream/): the packets it emitted and the messages of its errors.
import mqttPacket from 'mqtt-packet';
import type { ParserInternals } from '../../src/broker/upstream/client-parser.js';

export type Parsed<P> = { packets: (mqttPacket.Packet & P)[]; errors: string[] };

export function parsePackets<P = object>(bytes: Buffer, protocolVersion: 4 | 5 | undefined, guard?: (parser: ParserInternals) => void): Parsed<P> {
  const parser = protocolVersion === undefined ? mqttPacket.parser() : mqttPacket.parser({ protocolVersion });
  guard?.(parser as unknown as ParserInternals);
  const packets: (mqttPacket.Packet & P)[] = [];
  const errors: string[] = [];
  parser.on('packet', (p) => packets.push(p as mqttPacket.Packet & P));
  parser.on('error', (e) => errors.push(e.message));
  parser.parse(bytes);
  return { packets, errors };
}
