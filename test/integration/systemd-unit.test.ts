// systemd/edgewarden.service: `systemd-analyze verify` passes and `systemd-analyze security
// --offline=true` rates it at or under 2.0 ("OK"). verify needs ExecStart's program to exist, so it
// checks a copy whose ExecStart points at a stand-in executable; nothing else differs.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/policy.js';

const UNIT = join(ROOT, 'systemd', 'edgewarden.service');
const text = readFileSync(UNIT, 'utf8');

/** The effective assignments of a key in the [Service] section (the last one wins for most keys). */
function values(key: string): string[] {
  const service = /^\[Service\]\n([\s\S]*?)(?=^\[|(?![\s\S]))/m.exec(text)?.[1] ?? '';
  return service
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1));
}

t.test('the unit says what the package needs', async (t) => {
  t.same(values('ExecStart'), ['/usr/bin/edgewarden run -c /etc/edgewarden/config.yaml']);
  t.same(values('User'), ['edgewarden'], 'a dedicated system user');
  t.same(values('DynamicUser'), ['no']);
  t.same(values('StateDirectory'), ['edgewarden'], 'state in /var/lib/edgewarden');
  t.same(values('ConfigurationDirectory'), ['edgewarden'], 'configuration in /etc/edgewarden');
  t.same(values('ProtectSystem'), ['strict']);
  t.same(values('ProtectHome'), ['yes']);
  t.same(values('PrivateTmp'), ['yes']);
  t.same(values('NoNewPrivileges'), ['yes']);
  t.same(values('CapabilityBoundingSet'), [''], 'no capabilities: the default ports are above 1024');
  t.same(values('RestrictAddressFamilies'), ['AF_INET AF_INET6 AF_UNIX']);
  t.ok(values('SystemCallFilter').includes('@system-service'));
  t.same(values('SystemCallArchitectures'), ['native']);
  t.match(values('MemoryMax')[0] ?? '', /^[0-9]+[KMG]?$/, 'a memory limit');
  t.same(values('Restart'), ['on-failure']);
  // Readiness: the agent spawns systemd-notify (src/agent/sd-notify.ts), a child process.
  t.same(values('Type'), ['notify']);
  t.same(values('NotifyAccess'), ['all']);
  // V8's JIT needs writable+executable memory: MemoryDenyWriteExecute=yes would crash the agent.
  t.notOk(values('MemoryDenyWriteExecute').includes('yes'), 'MemoryDenyWriteExecute is not set');
  t.match(text, /MemoryDenyWriteExecute[^\n]*\n?[^\n]*JIT|JIT[\s\S]{0,200}MemoryDenyWriteExecute/, 'and the unit says why');
});

t.test('systemd-analyze verify', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ew-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stand = join(dir, 'edgewarden');
  writeFileSync(stand, '#!/bin/sh\nexit 0\n');
  chmodSync(stand, 0o755);
  const copy = text.replace(/^ExecStart=\/usr\/bin\/edgewarden /m, `ExecStart=${stand} `);
  t.not(copy, text, 'the copy points ExecStart at the stand-in');
  t.equal(copy.split('\n').filter((l, i) => l !== text.split('\n')[i]).length, 1, 'and differs in that line only');
  writeFileSync(join(dir, 'edgewarden.service'), copy);
  const r = spawnSync('systemd-analyze', ['verify', join(dir, 'edgewarden.service')], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, 'exits 0', { stderr: r.stderr });
  t.equal(r.stderr.trim(), '', 'and reports nothing (no unknown key, no bad value)');

  // The check can fail: an unknown key is reported.
  writeFileSync(join(dir, 'edgewarden.service'), copy.replace('[Service]\n', '[Service]\nProtectEverything=yes\n'));
  const bad = spawnSync('systemd-analyze', ['verify', join(dir, 'edgewarden.service')], { encoding: 'utf8', timeout: 60_000 });
  t.match(bad.stderr, /Unknown key 'ProtectEverything'/, 'a unit with an unknown key is reported');
});

t.test('systemd-analyze security --offline=true: at or under 2.0', async (t) => {
  const r = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', UNIT], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, 'exits 0', { stderr: r.stderr });
  const m = /Overall exposure level for edgewarden\.service: ([0-9.]+) (\S+)/.exec(r.stdout);
  t.ok(m, 'prints the overall exposure level');
  const score = Number(m?.[1]);
  t.comment(`systemd-analyze security --offline=true systemd/edgewarden.service: ${score} ${m?.[2]}`);
  t.ok(score <= 2.0, `exposure ${score} <= 2.0`);
  t.equal(m?.[2], 'OK');
});
