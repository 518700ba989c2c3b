import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { makeSnapshot, writeConfig, deviceId, deviceToken } from './dist/bench/broker.js';
const dir = mkdtempSync('/tmp/fp/conn/run-');
const snap = makeSnapshot(dir);
const { configFile, stateDir } = writeConfig(dir, 'conn', true, snap.keyFile, snap.snapshotFile);
const flags = (process.env.FLAGS ?? '--max-semi-space-size=2 --max-old-space-size=256').split(' ').filter(Boolean);
const child = spawn(process.execPath, [...flags, '--heapsnapshot-signal=SIGUSR2', 'bin/edgewarden.js', 'run', '-c', configFile, '--state-dir', stateDir, '--port', '0', '--log-level', 'info'], { cwd: '/work/main', stdio: ['ignore', 'pipe', 'inherit'] });
let port;
await new Promise((res) => { let buf = ''; child.stdout.on('data', (d) => { buf += d; const m = /"tcp":(\d+)/.exec(buf); if (m && buf.includes('"ready"')) { port = Number(m[1]); res(); } }); });
const smaps = (label) => { try { console.log('   ', readFileSync('/tmp/fp/stats2.txt', 'utf8').trim()); } catch {} const r = readFileSync(`/proc/${child.pid}/smaps_rollup`, 'utf8'); const g = (k) => (Number(new RegExp('^' + k + ':\\s+(\\d+)', 'm').exec(r)[1]) / 1024).toFixed(1); console.log(label, 'rss', g('Rss'), 'anon', g('Anonymous')); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
await sleep(1500); smaps('idle');
if (process.env.MAPS) { const { execFileSync } = await import('node:child_process'); console.log(execFileSync('python3', ['/tmp/fp/anon2.py', String(child.pid)], { encoding: 'utf8' })); }
if (process.env.HS) { child.kill('SIGUSR2'); await sleep(3000); }
const clients = [];
for (let i = 0; i < 1000; i++) {
  const c = mqtt.connect({ host: '127.0.0.1', port, clientId: `device-${i}`, username: deviceId(i), password: deviceToken(deviceId(i)), keepalive: 600, reconnectPeriod: 0 });
  clients.push(new Promise((res, rej) => { c.once('connect', () => res(c)); c.once('error', rej); }));
  if (i % 50 === 49) await Promise.all(clients.slice(-50));
}
const cs = await Promise.all(clients);
await sleep(1500); smaps('1000 connected');
if (process.env.LATER) { await sleep(8500); smaps('+10s'); await sleep(20000); smaps('+30s'); }
if (process.env.MAPS) { const { execFileSync } = await import('node:child_process'); console.log(execFileSync('python3', ['/tmp/fp/anon2.py', String(child.pid)], { encoding: 'utf8' })); }
if (process.env.SUB) { await Promise.all(cs.map((c, i) => c.subscribeAsync(`things/${deviceId(i)}/commands/#`, { qos: 1 }).catch(() => {}))); await sleep(1000); smaps('1000 subscribed'); }
if (process.env.HS) { child.kill('SIGUSR2'); await sleep(4000); }
for (const c of cs) c.end(true);
child.kill('SIGTERM');
