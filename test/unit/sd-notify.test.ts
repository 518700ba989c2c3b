// sd_notify through systemd-notify(1): nothing outside a Type=notify service; the assignments and
// NOTIFY_SOCKET reach systemd-notify; failures are reported, not thrown. A stand-in systemd-notify
// on PATH records what it was given (a live systemd is not available to the tests).
import t from 'tap';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sdNotify, sdNotifyEnabled, startWatchdog, watchdogIntervalMs } from '../../src/agent/sd-notify.js';

const dir = mkdtempSync(join(tmpdir(), 'ew-sdnotify-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const record = join(dir, 'record');
const stub = (body: string) => {
  writeFileSync(join(dir, 'systemd-notify'), `#!/bin/sh\n${body}\n`);
  chmodSync(join(dir, 'systemd-notify'), 0o755);
};
const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ PATH: `${dir}:/usr/bin:/bin`, ...extra });

t.test('off without NOTIFY_SOCKET: nothing is spawned', async (t) => {
  stub(`echo called > ${record}`);
  t.notOk(sdNotifyEnabled(env()));
  t.same(await sdNotify(['READY=1'], { env: env() }), { sent: false });
  t.notOk(existsSync(record), 'systemd-notify was not run');
});

t.test('with NOTIFY_SOCKET: the assignments go to systemd-notify', async (t) => {
  stub(`printf '%s\\n' "$NOTIFY_SOCKET" "$@" > ${record}`);
  const e = env({ NOTIFY_SOCKET: '/run/systemd/notify' });
  t.ok(sdNotifyEnabled(e));
  t.same(await sdNotify(['READY=1', 'STATUS=serving MQTT'], { env: e }), { sent: true });
  t.equal(readFileSync(record, 'utf8'), '/run/systemd/notify\nREADY=1\nSTATUS=serving MQTT\n');
});

t.test('failures are reported, not thrown', async (t) => {
  const e = env({ NOTIFY_SOCKET: '/run/systemd/notify' });
  stub('echo "Failed to notify init system: Connection refused" >&2; exit 1');
  const r = await sdNotify(['READY=1'], { env: e });
  t.equal(r.sent, false);
  t.match(r.error, /exited with 1: Failed to notify init system/);

  stub('exec sleep 5');
  const slow = await sdNotify(['WATCHDOG=1'], { env: e, timeoutMs: 200 });
  t.match(slow, { sent: false, error: /did not finish in 200 ms/ });

  const missing = await sdNotify(['READY=1'], { env: { NOTIFY_SOCKET: '/run/systemd/notify', PATH: join(dir, 'nowhere') } });
  t.match(missing, { sent: false, error: /systemd-notify: .*ENOENT/ });

  t.match(await sdNotify(['READY=1\nMAINPID=1'], { env: e }), { sent: false, error: /not a KEY=VALUE/ }, 'one assignment per argument, no newlines');
});

t.test('the watchdog interval is half of WATCHDOG_USEC, for this process only', async (t) => {
  t.equal(watchdogIntervalMs({}, 42), undefined, 'no WatchdogSec: no watchdog');
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }, 42), 15_000);
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' }, 42), 15_000, 'meant for this pid');
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '43' }, 42), undefined, 'meant for another process');
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '1000' }, 42), 1, 'never 0');
  for (const bad of ['0', '', '-5', '1e6', 'x']) t.equal(watchdogIntervalMs({ WATCHDOG_USEC: bad }, 42), undefined, `WATCHDOG_USEC=${JSON.stringify(bad)} is ignored`);
});

t.test('the watchdog pings at once, then every interval, never two at a time, until stopped', async (t) => {
  let pings = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let release: (() => void) | undefined;
  const stop = startWatchdog(50, () => {
    pings++;
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    return new Promise<void>((resolve) => (release = () => { inFlight--; resolve(); }));
  });
  t.equal(pings, 1, 'the first ping at once');
  await new Promise((r) => setTimeout(r, 230));
  t.equal(pings, 1, 'a slow ping is not doubled');
  release!();
  await new Promise((r) => setTimeout(r, 130));
  t.ok(pings >= 2, `pinging again once the slow one finished (${pings})`);
  release!();
  await new Promise((r) => setTimeout(r, 10));
  stop();
  const n = pings;
  release?.();
  await new Promise((r) => setTimeout(r, 200));
  t.equal(pings, n, 'no pings after stop');
  t.equal(maxInFlight, 1, 'one at a time');
});
