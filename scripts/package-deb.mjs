#!/usr/bin/env node
// `npm run package:deb`: Debian packages (amd64, arm64) of the single-file executables, with
// dpkg-deb. See docs/packaging.md for the layout; sources in deploy/debian/ and systemd/.
//
//   /usr/bin/edgewarden -> ../lib/edgewarden/edgewarden   the executable (its config/ and prebuilds/
//   /usr/lib/edgewarden/{edgewarden,config/,prebuilds/}    must sit beside its real path)
//   /lib/systemd/system/edgewarden.service                 the hardened unit
//   /etc/edgewarden/config.yaml                            conffile (config/edgewarden.yaml)
//   /etc/edgewarden/keys/                                  trusted public keys (*.pub.pem)
//   /usr/share/doc/edgewarden/                             copyright, packaging.md, LICENSES.md, the user
//                                                          docs (config.md, ...: DOC_FILES of package.mjs)
//   /usr/share/doc/edgewarden/examples/                    the example configurations (EXAMPLE_FILES)
//   /var/lib/edgewarden                                    made by postinst (and StateDirectory=)
//
// Output: out/edgewarden_<version>_<arch>.deb. `--arch arm64` (or `--arch=x64`) builds one;
// `--force` rebuilds the executables.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildExecutables, CONFIG_FILES, DOC_FILES, EXAMPLE_FILES, parseCli } from './package.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'out');
const DEBIAN_SRC = join(ROOT, 'deploy', 'debian');
const DEB_ARCH = { x64: 'amd64', arm64: 'arm64' };
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

function put(src, dest, mode) {
  mkdirSync(dirname(dest), { recursive: true });
  copyFileSync(src, dest);
  chmodSync(dest, mode);
}

/** Every regular file below dir, relative, sorted. */
function files(dir, base = dir) {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => {
      const p = join(dir, e.name);
      if (e.isDirectory()) return files(p, base);
      return e.isFile() ? [relative(base, p)] : [];
    })
    .sort();
}

export function debFile(arch) {
  return join(OUT, `edgewarden_${pkg.version}_${DEB_ARCH[arch]}.deb`);
}

export function buildDeb(arch, exeDir) {
  const staging = join(OUT, `.deb-${DEB_ARCH[arch]}`);
  rmSync(staging, { recursive: true, force: true });
  const lib = join(staging, 'usr', 'lib', 'edgewarden');
  mkdirSync(lib, { recursive: true });
  // The executable with what it reads beside it; the shipped configuration goes to /etc instead.
  put(join(exeDir, 'edgewarden'), join(lib, 'edgewarden'), 0o755);
  cpSync(join(exeDir, 'prebuilds'), join(lib, 'prebuilds'), { recursive: true });
  for (const f of CONFIG_FILES) put(join(exeDir, 'config', f), join(lib, 'config', f), 0o644);
  mkdirSync(join(staging, 'usr', 'bin'), { recursive: true });
  symlinkSync('../lib/edgewarden/edgewarden', join(staging, 'usr', 'bin', 'edgewarden'));
  put(join(ROOT, 'systemd', 'edgewarden.service'), join(staging, 'lib', 'systemd', 'system', 'edgewarden.service'), 0o644);
  put(join(ROOT, 'config', 'edgewarden.yaml'), join(staging, 'etc', 'edgewarden', 'config.yaml'), 0o644);
  mkdirSync(join(staging, 'etc', 'edgewarden', 'keys'), { recursive: true });
  const doc = join(staging, 'usr', 'share', 'doc', 'edgewarden');
  put(join(DEBIAN_SRC, 'copyright'), join(doc, 'copyright'), 0o644);
  put(join(ROOT, 'docs', 'packaging.md'), join(doc, 'packaging.md'), 0o644);
  put(join(exeDir, 'LICENSES.md'), join(doc, 'LICENSES.md'), 0o644);
  // The docs link to the examples as ../config/<file> (the source tree's and the tarball's layout);
  // here the examples are in examples/ beside them.
  for (const f of DOC_FILES) {
    put(join(ROOT, 'docs', f), join(doc, f), 0o644);
    if (f.endsWith('.md')) writeFileSync(join(doc, f), readFileSync(join(doc, f), 'utf8').replaceAll('](../config/', '](examples/'));
  }
  for (const f of EXAMPLE_FILES) put(join(ROOT, 'config', f), join(doc, 'examples', f), 0o644);

  // Normal permissions whatever the umask: directories and executables 0755, the rest 0644.
  const normalise = (dir) => {
    chmodSync(dir, 0o755);
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) normalise(p);
      else if (e.isFile()) chmodSync(p, statSync(p).mode & 0o111 ? 0o755 : 0o644);
    }
  };
  normalise(staging);

  const payload = files(staging);
  const installedKiB = payload.reduce((n, f) => n + Math.ceil(lstatSync(join(staging, f)).size / 1024), 0) + 4;
  const control = join(staging, 'DEBIAN');
  mkdirSync(control, { mode: 0o755 });
  const fields = { VERSION: pkg.version, ARCH: DEB_ARCH[arch], INSTALLED_SIZE: String(installedKiB), NODE_VERSION: process.version };
  const text = readFileSync(join(DEBIAN_SRC, 'control.in'), 'utf8').replace(/@([A-Z_]+)@/g, (m, k) => {
    if (!(k in fields)) throw new Error(`control.in: unknown field ${m}`);
    return fields[k];
  });
  writeFileSync(join(control, 'control'), text, { mode: 0o644 });
  put(join(DEBIAN_SRC, 'conffiles'), join(control, 'conffiles'), 0o644);
  for (const s of ['postinst', 'prerm', 'postrm']) put(join(DEBIAN_SRC, s), join(control, s), 0o755);
  const md5 = payload.map((f) => `${createHash('md5').update(readFileSync(join(staging, f))).digest('hex')}  ${f}`).join('\n');
  writeFileSync(join(control, 'md5sums'), `${md5}\n`, { mode: 0o644 });

  const deb = debFile(arch);
  run('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z6', '--build', staging, deb]);
  rmSync(staging, { recursive: true, force: true });
  process.stderr.write(`package:deb: ${relative(ROOT, deb)}: ${(statSync(deb).size / 1048576).toFixed(1)} MiB\n`);
  return deb;
}

export async function buildDebs(arches = Object.keys(DEB_ARCH), { force = false } = {}) {
  const dirs = await buildExecutables({ arches, force, archive: false });
  return Object.fromEntries(arches.map((a) => [a, buildDeb(a, dirs[a])]));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { arches, values } = parseCli(process.argv.slice(2), { prog: 'package:deb', flags: ['force'] });
  buildDebs(arches, { force: values.force === true }).catch((err) => {
    console.error(`package:deb: ${err.stack ?? err}`);
    process.exitCode = 1;
  });
}
