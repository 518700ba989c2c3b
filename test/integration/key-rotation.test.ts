// Rotating the signing key without touching gateways (docs/snapshots.md, "Rotating the signing
// key"), on a real agent that trusts only the OLD key: a NEW-signed snapshot is refused until it
// carries OLD's endorsement of NEW; then NEW is learned (and survives a restart), OLD signs on until
// the retire time it set itself, and is refused after it. Self-endorsements and chains through a key
// the same snapshot introduces are refused throughout.
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { loadPolicyText, compilePolicy } from '../../src/policy/validate.js';
import { signSnapshot } from '../../src/snapshot/snapshot.js';
import { signEndorsement } from '../../src/snapshot/endorsement.js';
import { kidOf, parsePrivateKey, parsePublicKey } from '../../src/snapshot/keys.js';
import { cli } from '../helpers/cli.js';
import { cleanup, EXAMPLE_POLICY, sleep, startAgent, type AgentProcess } from '../helpers/agent.js';

/** How far ahead OLD's retirement is set: room for a restart and two installs on a loaded machine. */
const RETIRE_AHEAD_MS = 30_000;

t.test('rotation: endorse, learn, restart, retire', async (t) => {
  const dir = t.testdir({});
  for (const name of ['old', 'new', 'third']) t.equal(cli(['keygen', '-o', dir, '-n', name]).code, 0, `keygen ${name}`);
  const priv = (name: string) => parsePrivateKey(readFileSync(join(dir, `${name}.key.pem`), 'utf8'));
  const pub = (name: string) => parsePublicKey(readFileSync(join(dir, `${name}.pub.pem`), 'utf8'));
  const KID = { old: kidOf(pub('old')), new: kidOf(pub('new')), third: kidOf(pub('third')) };

  const { policy } = loadPolicyText(readFileSync(EXAMPLE_POLICY, 'utf8'), EXAMPLE_POLICY);
  const sign = (version: number, key: 'old' | 'new' | 'third', endorsement?: Uint8Array): string => {
    const bytes = signSnapshot(compilePolicy(policy, { version, issuedAt: Date.now() - 60_000 }), priv(key), KID[key], endorsement ? { endorsement } : {});
    const file = join(dir, `v${version}-${key}-${Math.random().toString(36).slice(2)}.cose`);
    writeFileSync(file, bytes);
    return file;
  };

  let agent: AgentProcess = await startAgent({ bootstrap: null, config: { trust: { keys: [join(dir, 'old.pub.pem')] } } });
  t.teardown(async () => {
    await agent.kill();
    cleanup(agent);
  });
  const config = join(agent.stateDir, 'test-config.yaml');
  const install = (file: string) => cli(['snapshot', 'install', file, '-c', config, '--state-dir', agent.stateDir]);
  const status = () => JSON.parse(cli(['status', '-c', config, '--state-dir', agent.stateDir, '--json']).stdout) as {
    snapshotVersion: number;
    keys: { configured: string[]; learned: { kid: string; endorsedBy: string }[]; retired: { kid: string; passed: boolean }[] };
  };
  const accepted = (file: string, version: number, label: string) => {
    const r = install(file);
    t.equal(r.code, 0, `${label}: accepted (${r.stderr.trim()})`);
    t.match(r.stdout, `installed snapshot version ${version} into the running agent`, label);
  };
  const refused = (file: string, re: RegExp, label: string) => {
    const r = install(file);
    t.equal(r.code, 1, `${label}: refused`);
    t.match(r.stderr, re, `${label}: ${re}`);
  };

  accepted(sign(1, 'old'), 1, 'OLD-signed v1');
  // (1) NEW, without an endorsement: unknown.
  refused(sign(2, 'new'), /EW_SNAPSHOT_UNKNOWN_KID/, 'NEW-signed, no endorsement');
  // (5) NEW endorsing itself; THIRD endorsed by NEW (a key only this snapshot would introduce).
  const self = signEndorsement(priv('new'), KID.new, pub('new'), { issuedAt: Date.now() });
  refused(sign(2, 'new', self), /EW_SNAPSHOT_BAD_ENDORSEMENT: .*endorses itself/, 'NEW-signed, endorsing itself');
  refused(sign(2, 'third', signEndorsement(priv('new'), KID.new, pub('third'), { issuedAt: Date.now() })), /EW_SNAPSHOT_BAD_ENDORSEMENT: .*endorser ".*" is not a trusted key/, 'THIRD endorsed by NEW');

  // (2) OLD endorses NEW, retiring itself at T (the CLI, as an operator would).
  const T = Date.now() + RETIRE_AHEAD_MS;
  const endorsementFile = join(dir, 'old-endorses-new.cose');
  const e = cli(['key', 'endorse', '-k', join(dir, 'old.key.pem'), '--new', join(dir, 'new.pub.pem'), '--retire-after', new Date(T).toISOString(), '-o', endorsementFile]);
  t.equal(e.code, 0, e.stderr);
  const v2 = join(dir, 'v2-endorsed.cose');
  const s = cli(['snapshot', 'sign', EXAMPLE_POLICY, '-k', join(dir, 'new.key.pem'), '--version', '2', '--issued-at', new Date(Date.now() - 60_000).toISOString(), '--endorsement', endorsementFile, '-o', v2]);
  t.equal(s.code, 0, s.stderr);
  t.equal(cli(['snapshot', 'sign', EXAMPLE_POLICY, '-k', join(dir, 'third.key.pem'), '--version', '2', '--endorsement', endorsementFile, '-o', join(dir, 'x.cose')]).code, 2, 'sign --endorsement of another key: usage error');
  accepted(v2, 2, 'NEW-signed v2 with OLD\'s endorsement');
  await agent.waitLog(new RegExp(`learned snapshot key \\\\"${KID.new}\\\\", endorsed by \\\\"${KID.old}\\\\"`));

  // (3) Restart: v2 still in force, NEW learned; OLD still signs before T.
  await agent.stop();
  agent = await startAgent({ stateDir: agent.stateDir, bootstrap: null, configFile: config });
  let st = status();
  t.equal(st.snapshotVersion, 2, 'the NEW-signed snapshot is in force after the restart');
  t.match(st.keys, { configured: [KID.old], learned: [{ kid: KID.new, endorsedBy: KID.old }], retired: [{ kid: KID.old, passed: false }] });
  t.match(cli(['status', '-c', config, '--state-dir', agent.stateDir]).stdout, new RegExp(`learned\\s+${KID.new} \\(endorsed by ${KID.old}`), 'status text shows the learned key');
  t.ok(Date.now() < T, `still before T (${T - Date.now()} ms to go): else RETIRE_AHEAD_MS is too short for this machine`);
  accepted(sign(3, 'old'), 3, 'OLD-signed v3 before T');
  accepted(sign(4, 'new'), 4, 'NEW-signed v4 without an endorsement: NEW is learned');
  const x = cli(['explain', '-c', config, '--state-dir', agent.stateDir, '-p', 'op-bob', '-P', 'READ_CUSTOMER', '--json']);
  t.match(x.stdout, /"version": 4/, `explain reads v4, signed by the learned key (${x.stderr.trim()})`);

  // (4) After T (the system clock's real time; the agent's too): OLD is retired.
  while (Date.now() <= T + 1000) await sleep(200);
  refused(sign(5, 'old'), /EW_SNAPSHOT_KEY_RETIRED/, 'OLD-signed v5 after T');
  refused(sign(5, 'third', signEndorsement(priv('old'), KID.old, pub('third'), { issuedAt: Date.now() })), /EW_SNAPSHOT_BAD_ENDORSEMENT: .*was retired/, 'OLD endorsing THIRD after T (a stolen old key)');
  st = status();
  t.equal(st.snapshotVersion, 4, 'v4 still in force');
  t.match(st.keys.retired, [{ kid: KID.old, passed: true }]);
  accepted(sign(5, 'new', readFileSync(endorsementFile)), 5, 'NEW-signed v5, still carrying the endorsement');

  // A restart after T warns about the retired key in trust.keys, and keeps it retired.
  await agent.stop();
  agent = await startAgent({ stateDir: agent.stateDir, bootstrap: null, configFile: config });
  t.match(agent.logs().join('\n'), new RegExp(`trusted key \\\\"${KID.old}\\\\" in trust.keys was retired`), 'warning names the retired configured key');
  t.equal(status().snapshotVersion, 5);
  refused(sign(6, 'old'), /EW_SNAPSHOT_KEY_RETIRED/, 'OLD-signed v6 after a restart');

  // SIGHUP with NEW added to trust.keys (the operator's configuration update): OLD stays retired, NEW signs.
  const original = parse(readFileSync(config, 'utf8')) as Record<string, unknown>;
  writeFileSync(config, stringify({ ...original, trust: { keys: [join(dir, 'old.pub.pem'), join(dir, 'new.pub.pem')] } }));
  agent.child.kill('SIGHUP');
  t.match(await agent.waitLog(/configuration reloaded/), /"applied":\[[^\]]*"trust.keys"/, 'the new trust.keys are applied');
  refused(sign(6, 'old'), /EW_SNAPSHOT_KEY_RETIRED/, 'OLD-signed v6 after the reload');
  accepted(sign(6, 'new'), 6, 'NEW-signed v6 after the reload');
  t.match(status().keys, { configured: [KID.old, KID.new], retired: [{ kid: KID.old, passed: true }] });
});

t.test('key endorse and snapshot sign --endorsement: usage errors say what is wrong', async (t) => {
  const dir = t.testdir({});
  for (const name of ['old', 'new']) t.equal(cli(['keygen', '-o', dir, '-n', name]).code, 0);
  const endorse = (...extra: string[]) => cli(['key', 'endorse', '-k', join(dir, 'old.key.pem'), '--new', join(dir, 'new.pub.pem'), '-o', join(dir, 'e.cose'), ...extra]);
  const cases: [string[], RegExp][] = [
    [['--retire-in', '30x'], /--retire-in must be a duration such as 30d/],
    [['--retire-in', '1d', '--retire-after', '2030-01-01T00:00:00Z'], /give one, not both/],
    [['--retire-after', '2030-01-01'], /--retire-after must be an ISO 8601 time with a zone/],
    [['--issued-at', '2030-01-02T00:00:00Z', '--retire-after', '2030-01-01T00:00:00Z'], /is not after the issue time/],
  ];
  for (const [args, re] of cases) {
    const r = endorse(...args);
    t.equal(r.code, 2, `${args.join(' ')}: usage error`);
    t.match(r.stderr, re);
  }
  const self = cli(['key', 'endorse', '-k', join(dir, 'new.key.pem'), '--new', join(dir, 'new.pub.pem'), '-o', join(dir, 'self.cose')]);
  t.equal(self.code, 2, 'a key endorsing itself');
  t.match(self.stderr, /a key cannot endorse itself/);
  const ok = endorse('--retire-in', '2w');
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stderr, /retires at .* on each gateway that takes a snapshot carrying it/);
  const junk = join(dir, 'junk.cose');
  writeFileSync(junk, 'not an endorsement');
  const s = cli(['snapshot', 'sign', EXAMPLE_POLICY, '-k', join(dir, 'new.key.pem'), '--version', '2', '--endorsement', junk, '-o', join(dir, 's.cose')]);
  t.equal(s.code, 1);
  t.match(s.stderr, /EW_SNAPSHOT_BAD_ENDORSEMENT: .*junk.cose: endorsement is not a COSE_Sign1/);
});
