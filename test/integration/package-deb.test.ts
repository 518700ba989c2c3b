// The Debian packages (`npm run package:deb`, scripts/package-deb.mjs): control fields, conffiles,
// the file list (the docs and examples in /usr/share/doc/edgewarden/, their links resolving there),
// the maintainer scripts' syntax, and a real install, upgrade, remove and purge of the amd64 package
// with dpkg into a scratch root (`dpkg --root=DIR --force-script-chrootless`: the maintainer scripts
// run on the host with DPKG_ROOT=DIR and must keep below it). The packages' Depends (libc6,
// libstdc++6, passwd) are not installed in the scratch root: --force-depends.
// The README's `deb` block is not run (it installs system-wide and starts a service): each path it
// names must be in the package (or made by postinst), each unit it names shipped, and each
// `edgewarden` command in it must exist with the options it uses (the installed executable's --help).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { ROOT } from '../helpers/policy.js';
import { brokenLinks, commandsOf, markedBlock } from '../helpers/readme-steps.js';

t.setTimeout(600_000);

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const DOCS = [
  'audit.md', 'broker.md', 'choices.md', 'cli.md', 'cloud.md', 'config.md', 'decisions.md', 'errors.md', 'fleet.md', 'operating.md', 'policy.md',
  'policy.schema.json', 'reasons.md', 'snapshots.md', 'troubleshooting.md',
];
const EXAMPLES = ['cloud-tls.yaml', 'edgewarden.yaml', 'example-policy.yaml', 'templates/ibm-roles.yaml'];
const DEBS = { amd64: join(ROOT, 'out', `edgewarden_${VERSION}_amd64.deb`), arm64: join(ROOT, 'out', `edgewarden_${VERSION}_arm64.deb`) };
const TMP = mkdtempSync(join(tmpdir(), 'ew-deb-'));
t.teardown(() => rmSync(TMP, { recursive: true, force: true }));

function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 300_000, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ...opts.env } });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

const t0 = Date.now();
const build = sh(process.execPath, [join(ROOT, 'scripts', 'package-deb.mjs')]);
t.equal(build.code, 0, 'npm run package:deb builds', { stderr: build.stderr.slice(-4000) });
t.comment(`package:deb: ${((Date.now() - t0) / 1000).toFixed(1)} s`);

const EXPECTED_FILES = (arch: string) => [
  'drwxr-xr-x ./',
  'drwxr-xr-x ./etc/',
  'drwxr-xr-x ./etc/edgewarden/',
  '-rw-r--r-- ./etc/edgewarden/config.yaml',
  'drwxr-xr-x ./etc/edgewarden/keys/',
  'drwxr-xr-x ./lib/',
  'drwxr-xr-x ./lib/systemd/',
  'drwxr-xr-x ./lib/systemd/system/',
  '-rw-r--r-- ./lib/systemd/system/edgewarden.service',
  'drwxr-xr-x ./usr/',
  'drwxr-xr-x ./usr/bin/',
  'lrwxrwxrwx ./usr/bin/edgewarden -> ../lib/edgewarden/edgewarden',
  'drwxr-xr-x ./usr/lib/',
  'drwxr-xr-x ./usr/lib/edgewarden/',
  'drwxr-xr-x ./usr/lib/edgewarden/config/',
  'drwxr-xr-x ./usr/lib/edgewarden/config/demo-keys/',
  '-rw-r--r-- ./usr/lib/edgewarden/config/demo-keys/demo.pub.pem',
  '-rw-r--r-- ./usr/lib/edgewarden/config/example-policy.yaml',
  '-rw-r--r-- ./usr/lib/edgewarden/config/example-snapshot.cose',
  '-rwxr-xr-x ./usr/lib/edgewarden/edgewarden',
  'drwxr-xr-x ./usr/lib/edgewarden/prebuilds/',
  `drwxr-xr-x ./usr/lib/edgewarden/prebuilds/linux-${arch}/`,
  `-rwxr-xr-x ./usr/lib/edgewarden/prebuilds/linux-${arch}/node.napi.glibc.node`,
  'drwxr-xr-x ./usr/share/',
  'drwxr-xr-x ./usr/share/doc/',
  'drwxr-xr-x ./usr/share/doc/edgewarden/',
  '-rw-r--r-- ./usr/share/doc/edgewarden/LICENSES.md',
  '-rw-r--r-- ./usr/share/doc/edgewarden/copyright',
  '-rw-r--r-- ./usr/share/doc/edgewarden/packaging.md',
  ...DOCS.map((f) => `-rw-r--r-- ./usr/share/doc/edgewarden/${f}`),
  'drwxr-xr-x ./usr/share/doc/edgewarden/examples/',
  'drwxr-xr-x ./usr/share/doc/edgewarden/examples/templates/',
  ...EXAMPLES.map((f) => `-rw-r--r-- ./usr/share/doc/edgewarden/examples/${f}`),
].sort();

for (const [debArch, arch] of [['amd64', 'x64'], ['arm64', 'arm64']] as const) {
  t.test(`${debArch}: control, conffiles, files, scripts`, async (t) => {
    const deb = DEBS[debArch];
    const field = (f: string) => sh('dpkg-deb', ['-f', deb, f]).stdout.trim();
    t.equal(field('Package'), 'edgewarden');
    t.equal(field('Version'), VERSION);
    t.equal(field('Architecture'), debArch);
    t.match(field('Depends'), /libc6 \(>= 2\.28\)/, 'Depends names the C library');
    t.match(field('Depends'), /passwd/, 'and passwd (useradd)');
    t.ok(Number(field('Installed-Size')) > 90_000, 'Installed-Size in KiB');
    const info = sh('dpkg-deb', ['-I', deb]);
    t.equal(info.code, 0);
    for (const f of ['control', 'conffiles', 'md5sums', 'postinst', 'prerm', 'postrm']) t.match(info.stdout, new RegExp(`\\s${f}\\b`), `control archive has ${f}`);

    const ctl = join(TMP, `control-${debArch}`);
    t.equal(sh('dpkg-deb', ['-e', deb, ctl]).code, 0);
    t.equal(readFileSync(join(ctl, 'conffiles'), 'utf8'), '/etc/edgewarden/config.yaml\n', 'config.yaml is the conffile');
    for (const s of ['postinst', 'prerm', 'postrm']) {
      const text = readFileSync(join(ctl, s), 'utf8');
      t.match(text, /^#!\/bin\/sh\n/, `${s} is a POSIX shell script`);
      t.match(text, /^set -e$/m, `${s} sets -e`);
      t.ok(lstatSync(join(ctl, s)).mode & 0o100, `${s} is executable`);
      const n = sh('sh', ['-n', join(ctl, s)]);
      t.equal(n.code, 0, `sh -n ${s}`, { stderr: n.stderr });
      const dash = sh('dash', ['-n', join(ctl, s)]);
      t.equal(dash.code, 0, `dash -n ${s}`, { stderr: dash.stderr });
    }

    const list = sh('dpkg-deb', ['-c', deb]);
    const got = list.stdout
      .trim()
      .split('\n')
      .map((l) => l.split(/\s+/))
      .map((p) => `${p[0]} ${p.slice(5).join(' ')}`)
      .sort();
    t.same(got, EXPECTED_FILES(arch), 'the file list');
    t.match(list.stdout, /root\/root/, 'owned by root');
    t.notMatch(list.stdout, /demo\.key\.pem/, 'the demo PRIVATE key is not shipped');

    // The executable inside is the one for this architecture.
    const x = join(TMP, `x-${debArch}`);
    t.equal(sh('dpkg-deb', ['-x', deb, x]).code, 0);
    t.equal(readFileSync(join(x, 'usr/lib/edgewarden/edgewarden')).readUInt16LE(18), debArch === 'amd64' ? 0x3e : 0xb7, 'ELF machine');
    t.equal(readFileSync(join(x, 'etc/edgewarden/config.yaml'), 'utf8'), readFileSync(join(ROOT, 'config/edgewarden.yaml'), 'utf8'), 'config.yaml is config/edgewarden.yaml');
    t.equal(readFileSync(join(x, 'lib/systemd/system/edgewarden.service'), 'utf8'), readFileSync(join(ROOT, 'systemd/edgewarden.service'), 'utf8'), 'the unit is systemd/edgewarden.service');
    // The docs as in docs/, but for their links to the examples (../config/X there, examples/X here).
    const doc = join(x, 'usr/share/doc/edgewarden');
    for (const f of DOCS) {
      t.equal(readFileSync(join(doc, f), 'utf8'), readFileSync(join(ROOT, 'docs', f), 'utf8').replaceAll('](../config/', '](examples/'), `doc: ${f}`);
    }
    for (const f of EXAMPLES) t.equal(readFileSync(join(doc, 'examples', f), 'utf8'), readFileSync(join(ROOT, 'config', f), 'utf8'), `example: ${f}`);
    const markdown = readdirSync(doc).filter((f) => f.endsWith('.md'));
    t.same(brokenLinks(doc, markdown), [], `every relative link in /usr/share/doc/edgewarden/*.md (${markdown.length} files) resolves there`);
    rmSync(x, { recursive: true, force: true });
  });
}

t.test("the README's Debian steps name this version's package and what it holds", async (t) => {
  const block = markedBlock(README, 'deb');
  t.match(block, `apt install ./edgewarden_${VERSION}_arm64.deb`, `the arm64 package of this version (${VERSION})`);
  t.ok(existsSync(DEBS.arm64), 'which the build wrote');
  const list = sh('dpkg-deb', ['-c', DEBS.arm64]).stdout;
  const shipped = new Set(list.trim().split('\n').map((l) => l.split(/\s+/)[5]!.replace(/^\./, '').replace(/\/$/, '')));
  const madeByPostinst = ['/var/lib/edgewarden'];
  const paths = [...block.matchAll(/(?<=\s)\/[\w.-]+(?:\/[\w.-]+)*\/?/g)].map((m) => m[0].replace(/\/$/, ''));
  t.ok(paths.length >= 3, `it names paths: ${[...new Set(paths)].join(' ')}`);
  for (const p of new Set(paths)) t.ok(shipped.has(p) || madeByPostinst.includes(p), `${p} is in the package${madeByPostinst.includes(p) ? ' (made by postinst)' : ''}`);
  for (const m of block.matchAll(/(?:systemctl \w+|journalctl -u) ([\w-]+)/g)) t.ok(shipped.has(`/lib/systemd/system/${m[1]}.service`), `the unit ${m[1]}.service is shipped`);
});

/** The README's `deb` block's `edgewarden` commands: the subcommand words and the options used. */
function readmeDebCommands(): { line: string; sub: string[]; options: string[] }[] {
  return commandsOf(markedBlock(README, 'deb'))
    .filter((c) => c.startsWith('edgewarden '))
    .map((line) => {
      const words = line.replace(/\s+#\s.*$/, '').split(/\s+/).slice(1);
      const end = words.findIndex((w) => w.startsWith('-') || /[./]/.test(w));
      return { line, sub: end < 0 ? words : words.slice(0, end), options: words.filter((w) => w.startsWith('-')) };
    });
}

/** Every path below root (directories with a trailing /), but dpkg's own database and log. */
function tree(root: string, dir = root): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    const rel = relative(root, p);
    if (rel === 'var/lib/dpkg' || rel === 'var/log') return [];
    return e.isDirectory() ? [`${rel}/`, ...tree(root, p)] : [rel];
  }).sort();
}

t.test('amd64: install, upgrade, remove and purge in a scratch root', async (t) => {
  t.equal(process.getuid?.(), 0, 'runs as root (dpkg sets owners; CI runs as root)');
  const R = join(TMP, 'root');
  for (const d of ['var/lib/dpkg/info', 'var/lib/dpkg/updates', 'var/lib/dpkg/triggers', 'var/log', 'etc/systemd/system', 'var/lib/systemd', 'usr/sbin']) mkdirSync(join(R, d), { recursive: true });
  writeFileSync(join(R, 'var/lib/dpkg/status'), '');
  writeFileSync(join(R, 'var/lib/dpkg/available'), '');
  const accounts: Record<string, string> = {
    passwd: 'root:x:0:0:root:/root:/bin/bash\n',
    group: 'root:x:0:\n',
    shadow: 'root:*:19000:0:99999:7:::\n',
    gshadow: 'root:*::\n',
  };
  for (const [f, text] of Object.entries(accounts)) {
    writeFileSync(join(R, 'etc', f), text);
    copyFileSync(join(R, 'etc', f), join(R, 'etc', `${f}-`));
    if (f.includes('shadow')) chmodSync(join(R, 'etc', f), 0o640);
  }
  const before = tree(R);
  const hostPasswd = readFileSync('/etc/passwd', 'utf8');
  const hostGroup = readFileSync('/etc/group', 'utf8');
  const dpkg = (...args: string[]) => sh('dpkg', [`--root=${R}`, '--force-script-chrootless', '--force-depends', '--force-confdef', '--force-confold', ...args]);
  const status = () => /^Status: (.*)$/m.exec(sh('dpkg', [`--root=${R}`, '-s', 'edgewarden']).stdout)?.[1] ?? 'not installed';

  const inst = dpkg('-i', DEBS.amd64);
  t.equal(inst.code, 0, 'dpkg -i', { stderr: inst.stderr, stdout: inst.stdout });
  t.equal(status(), 'install ok installed');

  const user = readFileSync(join(R, 'etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith('edgewarden:'))?.split(':');
  t.ok(user, 'postinst made the user edgewarden (below the root)');
  const uid = Number(user?.[2]);
  t.ok(uid > 0 && uid < 1000, `a system uid (${uid})`);
  t.equal(user?.[5], '/var/lib/edgewarden', 'home: the state directory');
  t.equal(user?.[6], '/usr/sbin/nologin', 'no login shell');
  t.match(readFileSync(join(R, 'etc/group'), 'utf8'), /^edgewarden:x:\d+:$/m, 'and its group');
  t.equal(readFileSync('/etc/passwd', 'utf8'), hostPasswd, 'the host\'s /etc/passwd is untouched');
  t.equal(readFileSync('/etc/group', 'utf8'), hostGroup, 'the host\'s /etc/group is untouched');

  const state = lstatSync(join(R, 'var/lib/edgewarden'));
  t.ok(state.isDirectory(), '/var/lib/edgewarden exists');
  t.equal(state.uid, uid, 'owned by edgewarden');
  t.equal(state.mode & 0o777, 0o750, 'mode 0750');
  const wants = join(R, 'etc/systemd/system/multi-user.target.wants/edgewarden.service');
  t.equal(readlinkSync(wants), '/lib/systemd/system/edgewarden.service', 'the unit is enabled (multi-user.target.wants)');

  // The installed executable, through /usr/bin's symbolic link: its config/ is found beside its real path.
  const exe = join(R, 'usr/bin/edgewarden');
  const v = sh(exe, ['--version']);
  t.equal(v.stdout.trim(), `${VERSION} (node ${process.versions.node})`, '/usr/bin/edgewarden --version: the version and the embedded Node', { stderr: v.stderr });
  t.ok(Number(/\(node (\d+)\./.exec(v.stdout)?.[1]) >= 24, 'the embedded Node is 24 or newer', { stdout: v.stdout });
  const explain = sh(exe, ['explain', '-s', join(R, 'usr/lib/edgewarden/config/example-snapshot.cose'), '-p', 'viewer-carl', '-P', 'EXECUTE_THING_COMMAND', '--thing', 'oven-1']);
  t.equal(explain.code, 3, 'explain on the bundled example snapshot: deny (exit 3)', { stderr: explain.stderr });
  t.match(explain.stdout, `${R}/usr/lib/edgewarden/config/example-snapshot.cose`);
  const commands = readmeDebCommands();
  t.ok(commands.length >= 2, 'the README\'s Debian steps use edgewarden commands');
  for (const { line, sub, options } of commands) {
    const help = sh(exe, [...sub, '--help']);
    t.equal(help.code, 0, `edgewarden ${sub.join(' ')} exists (README: ${line})`, { stderr: help.stderr });
    for (const o of options) t.match(help.stdout, new RegExp(`(^|[\\s,])${o}\\b`, 'm'), `and takes ${o}`);
  }

  // Upgrade (reinstall): an administrator's edit of the conffile is kept; the user is not duplicated.
  const conf = join(R, 'etc/edgewarden/config.yaml');
  writeFileSync(conf, `${readFileSync(conf, 'utf8')}# edited by the administrator\n`);
  writeFileSync(join(R, 'var/lib/edgewarden/audit.jsonl'), '{}\n');
  const again = dpkg('-i', DEBS.amd64);
  t.equal(again.code, 0, 'dpkg -i again (upgrade path)', { stderr: again.stderr });
  t.match(readFileSync(conf, 'utf8'), /# edited by the administrator\n$/, 'the edited conffile is kept');
  t.equal(readFileSync(join(R, 'etc/passwd'), 'utf8').split('\n').filter((l) => l.startsWith('edgewarden:')).length, 1, 'one user edgewarden');

  const rm = dpkg('-r', 'edgewarden');
  t.equal(rm.code, 0, 'dpkg -r', { stderr: rm.stderr });
  t.equal(status(), 'deinstall ok config-files');
  for (const gone of ['usr/bin/edgewarden', 'usr/lib/edgewarden', 'lib/systemd/system/edgewarden.service', 'usr/share/doc/edgewarden']) t.notOk(existsSync(join(R, gone)), `removed: /${gone}`);
  t.ok(existsSync(conf), 'remove keeps the configuration');
  t.ok(existsSync(join(R, 'var/lib/edgewarden/audit.jsonl')), 'and the state');
  t.match(readFileSync(join(R, 'etc/passwd'), 'utf8'), /^edgewarden:/m, 'and the user');

  const purge = dpkg('-P', 'edgewarden');
  t.equal(purge.code, 0, 'dpkg -P', { stderr: purge.stderr });
  t.equal(status(), 'not installed');
  t.same(tree(R), before, 'after purge the scratch root holds exactly what it held before');
  for (const [f, text] of Object.entries(accounts)) t.equal(readFileSync(join(R, 'etc', f), 'utf8'), text, `/etc/${f} is as before (user and group gone)`);
});
