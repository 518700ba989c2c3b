// Raw MQTT probes against a running agent (investigation of issue 15; not a test).
//   node docs/notes/mqtt5-spike/probe.mjs PORT NAME
import net from 'node:net';
import mqtt from 'mqtt-packet';

const [port, name] = [Number(process.argv[2]), process.argv[3]];

function open(version = 5) {
  const s = net.connect(port, '127.0.0.1');
  const parser = mqtt.parser({ protocolVersion: version });
  const got = [];
  let closed = false;
  parser.on('packet', (p) => { got.push(p); console.log('  <-', JSON.stringify(summ(p))); });
  parser.on('error', (e) => console.log('  parse error', e.message));
  s.on('data', (b) => parser.parse(b));
  s.on('close', () => { closed = true; console.log('  (closed)'); });
  s.on('error', (e) => console.log('  socket error', e.code));
  const send = (p) => s.write(mqtt.generate(p, { protocolVersion: version }));
  return { s, got, send, get closed() { return closed; } };
}
const summ = (p) => { const o = { ...p }; if (o.payload) o.payload = o.payload.toString(); for (const k of ['length', 'topic']) if (o[k] === undefined || o[k] === null) delete o[k]; return o; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const conn = (clientId, username, password, extra = {}) => ({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId, keepalive: 30, username, password: Buffer.from(password), ...extra });

const probes = {
  async level0() {
    // The CONNECT the protocol-sessions test sends at an unsupported level (< 5)
    const str = (s) => { const b = Buffer.from(s); return [b.length >> 8, b.length & 0xff, ...b]; };
    for (const level of [0, 2, 6]) {
      console.log('level', level);
      const c = open(4);
      const body = [...str('MQTT'), level, 0xc2, 0, 30, ...str(`lvl-${level}`), ...str('tech-anna'), ...str('anna-pass')];
      c.s.write(Buffer.from([0x10, body.length, ...body]));
      await sleep(1500);
    }
  },
  async protoKeys() {
    for (const id of ['constructor', 'toString', 'hasOwnProperty']) {
      console.log('client id', id);
      const c = open();
      c.send(conn(id, 'tech-anna', 'anna-pass'));
      await sleep(1000);
    }
  },
  async protoFilter() {
    const c = open();
    c.send(conn('pf', 'tech-anna', 'anna-pass'));
    await sleep(300);
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'constructor', qos: 1 }] });
    await sleep(1000);
  },
  async dupPubrel() {
    // a QoS 2 PUBLISH, then two PUBRELs for it in one TCP write (v5 and v4)
    for (const v of [5, 4]) {
      console.log('version', v);
      const c = open(v);
      c.send({ ...conn(`dup${v}`, 'mixer-1', 'mixer-1-token'), protocolVersion: v });
      await sleep(300);
      c.send({ cmd: 'publish', topic: 'things/mixer-1/telemetry/t', payload: Buffer.from('1'), qos: 2, messageId: 7 });
      await sleep(300);
      const rel = mqtt.generate({ cmd: 'pubrel', messageId: 7 }, { protocolVersion: v });
      c.s.write(Buffer.concat([rel, rel]));
      await sleep(1000);
    }
  },
  async deny() {
    // carl may not command oven-1: QoS 1 and 2, then QoS 0, then whether the connection stays
    const c = open();
    c.send(conn('carl5', 'viewer-carl', 'carl-pass'));
    await sleep(300);
    c.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('x'), qos: 1, messageId: 1 });
    c.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('x'), qos: 2, messageId: 2 });
    c.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('x'), qos: 0 });
    await sleep(500);
    c.send({ cmd: 'pingreq' });
    await sleep(500);
    console.log('still open:', !c.closed);
  },
  async alias() {
    // anna registers alias 1 for an allowed topic (topicAliasMaximum is 0 on the agent)
    const c = open();
    c.send(conn('alias', 'tech-anna', 'anna-pass'));
    await sleep(300);
    c.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('x'), qos: 1, messageId: 1, properties: { topicAlias: 1 } });
    await sleep(800);
  },
  async props() {
    // oven-1 subscribes to its commands; anna sends one with v5 properties; what arrives?
    const d = open();
    d.send(conn('oven-1', 'oven-1', 'oven-1-token'));
    await sleep(300);
    d.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'things/oven-1/commands/#', qos: 1 }] });
    await sleep(300);
    const a = open();
    a.send(conn('anna', 'tech-anna', 'anna-pass'));
    await sleep(300);
    a.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('go'), qos: 1, messageId: 1,
      properties: { responseTopic: 'things/oven-1/commands/reboot/reply', correlationData: Buffer.from('c-1'), userProperties: { k: 'v' }, messageExpiryInterval: 60, contentType: 'text/plain' } });
    await sleep(1000);
  },
  async queued() {
    // a persistent v5 session (expiry 3600) for oven-1; a command with properties sent while it is away
    const d = open();
    d.send({ ...conn('oven-1', 'oven-1', 'oven-1-token'), clean: false, properties: { sessionExpiryInterval: 3600 } });
    await sleep(300);
    d.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'things/oven-1/commands/#', qos: 1 }] });
    await sleep(300);
    d.send({ cmd: 'disconnect' });
    await sleep(300);
    const a = open();
    a.send(conn('anna', 'tech-anna', 'anna-pass'));
    await sleep(300);
    a.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('queued'), qos: 1, messageId: 1,
      properties: { responseTopic: 'things/oven-1/commands/reboot/reply', correlationData: Buffer.from('c-2'), userProperties: { k: 'v' }, messageExpiryInterval: 60 } });
    await sleep(500);
    console.log('resume');
    const r = open();
    r.send({ ...conn('oven-1', 'oven-1', 'oven-1-token'), clean: false, properties: { sessionExpiryInterval: 3600 } });
    await sleep(1000);
  },
  async qos2residue() {
    // [MQTT-3.1.2-6]: anna (clean session, v4) sends QoS 2 id 9 and never PUBRELs, leaves, comes back
    // with a clean session and sends a new QoS 2 message with id 9: is it delivered to oven-1?
    const d = open(4);
    d.send({ ...conn('oven-1', 'oven-1', 'oven-1-token'), protocolVersion: 4 });
    await sleep(300);
    d.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'things/oven-1/commands/#', qos: 2 }] });
    await sleep(300);
    const a = open(4);
    a.send({ ...conn('anna-r', 'tech-anna', 'anna-pass'), protocolVersion: 4 });
    await sleep(300);
    a.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('first'), qos: 2, messageId: 9 });
    await sleep(300);
    a.s.destroy();
    await sleep(300);
    console.log('anna back, clean session');
    const b = open(4);
    b.send({ ...conn('anna-r', 'tech-anna', 'anna-pass'), protocolVersion: 4 });
    await sleep(300);
    b.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('second'), qos: 2, messageId: 9 });
    await sleep(300);
    b.send({ cmd: 'pubrel', messageId: 9 });
    await sleep(800);
    console.log('oven-1 got:', d.got.filter((p) => p.cmd === 'publish').map((p) => p.payload.toString()));
  },
  async takeover() {
    // the same client id twice (v5): does the first connection get a DISCONNECT with a reason?
    const a = open();
    a.send(conn('anna-t', 'tech-anna', 'anna-pass'));
    await sleep(300);
    console.log('second connection');
    const b = open();
    b.send(conn('anna-t', 'tech-anna', 'anna-pass'));
    await sleep(800);
  },
  async badUtf8Prop() {
    // a v5 PUBLISH whose user property value is not UTF-8 (the topic guard also sees property strings)
    const c = open();
    c.send(conn('u8', 'tech-anna', 'anna-pass'));
    await sleep(300);
    const ok = mqtt.generate({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('x'), qos: 0, properties: { userProperties: { k: 'vv' } } }, { protocolVersion: 5 });
    const i = ok.indexOf(Buffer.from('vv'));
    ok[i] = 0xc3; ok[i + 1] = 0x28;
    c.s.write(ok);
    await sleep(800);
  },
  async emptyId() {
    // [MQTT-3.1.3-8] 3.1.1: empty client id with CleanSession=0
    const c = open(4);
    const str = (x) => { const b = Buffer.from(x); return [b.length >> 8, b.length & 0xff, ...b]; };
    const body = [...str('MQTT'), 4, 0xc0, 0, 30, 0, 0, ...str('oven-1'), ...str('oven-1-token')];
    c.s.write(Buffer.from([0x10, body.length, ...body]));
    await sleep(800);
  },
  async qos2flood() {
    // 50 QoS 2 PUBLISHes without PUBREL (limits.maxInflightPerClient defaults to 20?)
    const c = open();
    c.send(conn('flood', 'mixer-1', 'mixer-1-token'));
    await sleep(300);
    for (let i = 1; i <= 50; i++) c.send({ cmd: 'publish', topic: 'things/mixer-1/telemetry/t', payload: Buffer.from('1'), qos: 2, messageId: i });
    await sleep(1500);
    console.log('PUBRECs:', c.got.filter((p) => p.cmd === 'pubrec').length, 'closed:', c.closed);
  },
};
await probes[name]();
process.exit(0);
