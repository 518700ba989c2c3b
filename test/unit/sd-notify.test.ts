// sd_notify through systemd-notify(1): nothing outside a Type=notify service; the assignments and
// NOTIFY_SOCKET reach systemd-notify; failures are reported, not thrown. A stand-in systemd-notify
// on PATH records what it was given (a live systemd is not available to the tests).
import t from 'tap';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sdNotify, sdNotifyEnabled } from '../../src/agent/sd-notify.js';

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
