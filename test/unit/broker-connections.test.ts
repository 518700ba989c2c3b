// Connection events: refusals counted by reason, one warning line and audit record per address and
// reason and interval (then a count), connect lines bounded per client id, disconnects with why.
import t from 'tap';
import type { Client } from 'aedes';
import type { Logger } from 'pino';
import type { AuditRecord } from '../../src/audit/audit-log.js';
import type { AgentConfig } from '../../src/config/load.js';
import { CONNECT_LINES, ConnectionEvents } from '../../src/broker/connections.js';
import { REMOTE } from '../../src/broker/session.js';

function fixture() {
  const lines: { level: string; fields: Record<string, unknown>; msg: string }[] = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => lines.push({ level, fields, msg });
  const log = { info: at('info'), warn: at('warn'), debug: at('debug'), error: at('error') } as unknown as Logger;
  const audit: AuditRecord[] = [];
  const config = { listeners: { tls: { ca: null, requestClientCert: false, requireClientCert: false } } } as unknown as AgentConfig;
  const events = new ConnectionEvents({ config, log, audit: (r) => audit.push(r), snapshotVersion: () => 7 });
  return { lines, audit, events };
}

const client = (id: string | undefined, remote = '10.0.0.7'): Client => ({ id, clean: true, conn: {}, [REMOTE]: remote }) as unknown as Client;

t.test('a refusal: counted always, logged and audited once per address and reason and interval', async (t) => {
  const { lines, audit, events } = fixture();
  for (let i = 0; i < 500; i++) events.refuse(client('pump-7'), 'BAD_CREDENTIALS', 'pump-7', 4);
  events.refuse(client('pump-7'), 'CLIENT_ID_TAKEN', 'pump-7', 2);
  events.refuse(client('pump-8', '10.0.0.8'), 'BAD_CREDENTIALS', 'pump-8', 4);
  t.same(events.refused(), { total: 502, byReason: { BAD_CREDENTIALS: 501, CLIENT_ID_TAKEN: 1 } });
  t.equal(lines.length, 3, 'one line per address and reason');
  t.match(lines[0], { level: 'warn', msg: 'connection refused: BAD_CREDENTIALS', fields: { reason: 'BAD_CREDENTIALS', connack: '0x04', remote: '10.0.0.7', clientId: 'pump-7', username: 'pump-7' } });
  t.equal(audit.length, 3);
  t.match(audit[0], { action: 'connect', decision: 'deny', reason: 'BAD_CREDENTIALS', snapshotVersion: 7, remote: '10.0.0.7' });
  events.flush();
  t.equal(lines.length, 4, 'the interval ends with one line for what was counted');
  t.match(lines[3], { level: 'warn', fields: { reason: 'BAD_CREDENTIALS', remote: '10.0.0.7', count: 499 } });
  t.match(audit[3], { reason: 'BAD_CREDENTIALS', remote: '10.0.0.7', count: 499 });
  events.flush();
  t.equal(lines.length, 4, 'nothing counted, nothing written');
});

t.test('connects: the first CONNECT_LINES of a client id per interval, then a count; disconnects only for those', async (t) => {
  const { lines, events } = fixture();
  const clients = Array.from({ length: 10 }, () => client('oven-1'));
  for (const c of clients) {
    events.connected(c, undefined);
    events.disconnected(c, undefined);
  }
  t.equal(lines.filter((l) => l.msg === 'client connected: oven-1').length, CONNECT_LINES);
  t.equal(lines.filter((l) => l.msg.startsWith('client disconnected: oven-1')).length, CONNECT_LINES);
  events.flush();
  t.match(lines.at(-1), { level: 'info', fields: { clientId: 'oven-1', count: 10 - CONNECT_LINES } });
});

t.test('why a client went: the first reason given wins; DISCONNECT or connection lost otherwise', async (t) => {
  const { lines, events } = fixture();
  const a = client('a');
  events.connected(a, undefined);
  events.ending(a, 'revoked', { snapshotVersion: 8 });
  events.ending(a, 'shutdown');
  events.disconnected(a, undefined);
  t.match(lines.at(-1), { msg: 'client disconnected: a (revoked)', fields: { why: 'revoked', snapshotVersion: 8 } });
  const b = client('b');
  events.connected(b, undefined);
  (b as unknown as { _disconnected: boolean })._disconnected = true;
  events.disconnected(b, undefined);
  t.match(lines.at(-1), { fields: { why: 'client' } });
  const c = client('c');
  events.connected(c, undefined);
  events.disconnected(c, undefined);
  t.match(lines.at(-1), { fields: { why: 'connection lost' } });
});
