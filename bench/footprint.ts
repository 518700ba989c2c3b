// The footprint section of the bench: the agent's peak memory while it installs the largest snapshot
// its default configuration accepts (snapshot.maxBytes, 32 MiB), against the systemd unit's
// MemoryMax (systemd/edgewarden.service, 512M).
//
// A synthetic tenant (synthetic.ts), scaled until its signed snapshot is just under snapshot.maxBytes,
// is installed into the real agent (a child process, as the broker section starts it, idle on the
// example snapshot, with the executable's own V8 flags: package.json "edgewarden.nodeFlags"), each way
// into a fresh agent so that each peak (VmHWM, /proc/<pid>/status) is that agent's own:
//
//   control   `edgewarden snapshot install FILE` (the CLI, a child process), over the control socket;
//             then the same tenant again as the next version (replace: the agent holds the largest
//             snapshot while it takes in another)
//   inbox     the file copied into <stateDir>/inbox/ (as `cp` does: written in place, not renamed)
//   limited   as control, with the V8 heap limit Node gives itself under the unit's MemoryMax
//             (--max-old-space-size = MemoryMax / 2: see HEAP_LIMIT_NOTE); whether the agent survives
//
// The same bytes are also verified and indexed in the bench process after a full GC, to show what
// the agent keeps. See bench/README.md.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as toYaml } from 'yaml';
import { DEFAULT_CONFIG } from '../src/config/load.js';
import { buildIndex } from '../src/decide/policy-index.js';
import { generateKeyPair, parsePrivateKey, parsePublicKey } from '../src/snapshot/keys.js';
import { signSnapshot, verifySnapshot } from '../src/snapshot/snapshot.js';
import type { SnapshotPayload } from '../src/policy/schema.js';
import { BIN, cleanUpOnExit, packageNodeFlags, startAgentProcess, type AgentProcess } from './agent-process.js';
import { collect, MB, now, settle } from './measure.js';
import { generateTenant } from './synthetic.js';

const ROOT = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../' : '../', import.meta.url));
const EXAMPLE_SNAPSHOT = join(ROOT, 'config', 'example-snapshot.cose');
const DEMO_PUB = join(ROOT, 'config', 'demo-keys', 'demo.pub.pem');
const UNIT_FILE = join(ROOT, 'systemd', 'edgewarden.service');

/** The version of the large snapshot (above the example snapshot's, 1); the replacement is VERSION + 1. */
const VERSION = 1000;
/** Things in the first attempt: about 173 bytes each (with a fifth as many other principals) fill 32 MiB. */
const FIRST_GUESS_THINGS = 193_000;
/** Aim at this share of snapshot.maxBytes, and accept anything from LOW_SHARE up to the limit. */
const AIM_SHARE = 0.997;
const LOW_SHARE = 0.99;
const MAX_ATTEMPTS = 4;
const PRINCIPALS_PER_THING = 0.2; // as in the decisions section: 100,000 things, 20,000 other principals
const SEED = 0xf007;
/** The agent runs this long idle on the example snapshot before its baseline is read. */
const IDLE_MS = 2000;
/** And this long after an install before its RSS after is read. */
const AFTER_MS = 2000;
const INBOX_TIMEOUT_MS = 60_000;
const POLL_MS = 20;
/** VmHWM is read this often while an install runs: the last reading stands when the agent dies. */
const SAMPLE_MS = 10;
/**
 * Under systemd's MemoryMax, Node sizes V8's heap from the cgroup's limit (node's
 * SetIsolateCreateParamsForNode: uv_get_constrained_memory, then V8's ConfigureDefaults), and V8
 * gives the old generation a quarter of that memory, times 2 on a 64-bit build (x64, arm64):
 * MemoryMax / 2. The limited run passes that as --max-old-space-size, here where there is no limit.
 */
const HEAP_LIMIT_NOTE = '--max-old-space-size = MemoryMax / 2, the old generation V8 sizes from a 64-bit process\'s cgroup limit';

export type FootprintFigures = Record<string, string | number | boolean>;

const r1 = (x: number): number => Math.round(x * 10) / 10;
const int = (x: number): string => Math.round(x).toLocaleString('en-US');
const mb = (b: number | null): number => (b === null ? NaN : b / MB);

/** MemoryMax of the systemd unit, in bytes (512M = 512 MiB); NaN when the unit file does not say. */
function unitMemoryMax(): number {
  try {
    const m = /^MemoryMax=(\d+)([KMGT]?)\s*$/m.exec(readFileSync(UNIT_FILE, 'utf8'));
    if (!m) return NaN;
    return Number(m[1]) * 1024 ** ' KMGT'.indexOf(m[2] || ' ');
  } catch {
    return NaN;
  }
}

interface LargestSnapshot {
  /** Version VERSION, and the same tenant as VERSION + 1 (one byte more or less: still under the limit). */
  readonly bytes: Buffer;
  readonly nextBytes: Buffer;
  readonly things: number;
  readonly principals: number;
  readonly publicKeyPem: string;
  readonly kid: string;
  readonly attempts: number;
  readonly generateMs: number;
}

/** A synthetic tenant scaled until its signed snapshot is within [LOW_SHARE, 1] × maxBytes. */
function makeLargestSnapshot(maxBytes: number, progress: (line: string) => void): LargestSnapshot {
  const kp = generateKeyPair();
  const key = parsePrivateKey(kp.privateKeyPem);
  const t0 = now();
  let things = FIRST_GUESS_THINGS;
  let best: { bytes: Buffer; things: number; principals: number; payload: SnapshotPayload } | undefined;
  let attempts = 0;
  while (attempts < MAX_ATTEMPTS) {
    attempts++;
    const principals = Math.round(things * PRINCIPALS_PER_THING);
    progress(`footprint: generating and signing ${int(things)} things, ${int(principals)} other principals (attempt ${attempts})`);
    const payload = { ...generateTenant({ things, principals, seed: SEED, issuedAt: Date.now() - 60_000 }).payload, version: VERSION };
    const bytes = signSnapshot(payload, key, kp.kid);
    if (bytes.length <= maxBytes && (best === undefined || bytes.length > best.bytes.length)) best = { bytes, things, principals, payload };
    if (bytes.length <= maxBytes && bytes.length >= LOW_SHARE * maxBytes) break;
    things = Math.floor((things * AIM_SHARE * maxBytes) / bytes.length);
  }
  if (best === undefined) throw new Error(`footprint: no snapshot under ${maxBytes} bytes after ${attempts} attempts`);
  progress(`footprint: signing the same tenant as version ${VERSION + 1}`);
  const nextBytes = signSnapshot({ ...best.payload, version: VERSION + 1 }, key, kp.kid);
  if (nextBytes.length > maxBytes) throw new Error(`footprint: version ${VERSION + 1} is ${nextBytes.length} bytes, over ${maxBytes}`);
  return { bytes: best.bytes, nextBytes, things: best.things, principals: best.principals, publicKeyPem: kp.publicKeyPem, kid: kp.kid, attempts, generateMs: now() - t0 };
}

/** What the agent holds for the snapshot, measured in this process: the verified payload, then the index. */
function heldBreakdown(s: LargestSnapshot): { payloadHeapMB: number; indexHeapMB: number; indexArrayBuffersMB: number; verifyMs: number; indexMs: number } {
  const trusted = new Map([[s.kid, parsePublicKey(s.publicKeyPem)]]);
  collect();
  const m0 = process.memoryUsage();
  const t0 = now();
  let verified: ReturnType<typeof verifySnapshot> | undefined = verifySnapshot(s.bytes, trusted, { maxBytes: s.bytes.length });
  const t1 = now();
  collect();
  const m1 = process.memoryUsage();
  const t2 = now();
  let index: ReturnType<typeof buildIndex> | undefined = buildIndex(verified.payload);
  const t3 = now();
  collect();
  const m2 = process.memoryUsage();
  if (index.thingIds.length !== s.things) throw new Error(`footprint: indexed ${index.thingIds.length} things, not ${s.things}`);
  verified = undefined;
  index = undefined;
  return {
    payloadHeapMB: (m1.heapUsed - m0.heapUsed) / MB,
    indexHeapMB: (m2.heapUsed - m1.heapUsed) / MB,
    indexArrayBuffersMB: (m2.arrayBuffers - m1.arrayBuffers) / MB,
    verifyMs: t1 - t0,
    indexMs: t3 - t2,
  };
}

/** One install into a running agent, and the agent's memory around it. */
interface Install {
  /** 'ok', or what became of the agent (it died: the last lines it wrote say why). */
  readonly outcome: string;
  readonly ms: number;
  readonly rssBeforeBytes: number | null;
  readonly peakBeforeBytes: number | null;
  /** VmHWM at the end (or the last reading before the agent died). */
  readonly peakBytes: number | null;
  /** VmRSS AFTER_MS after the install (null when the agent died). */
  readonly rssAfterBytes: number | null;
}

/** Runs bin/edgewarden.js with `args`; resolves with its wall time, exit code and output. */
function runCli(args: readonly string[]): Promise<{ ms: number; code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const t0 = now();
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ ms: now() - t0, code, output: out.trim() }));
  });
}

const alive = (a: AgentProcess): boolean => a.child.exitCode === null && a.child.signalCode === null;

/** After a failed install: why the agent died (from its last output lines), or `failure` when it still runs 2 s later. */
async function deathOf(a: AgentProcess, failure: string): Promise<string> {
  for (let i = 0; i < 100 && alive(a); i++) await settle(20);
  if (alive(a)) return failure;
  const logs = a.logs();
  const oom = logs.find((l) => /heap out of memory|Reached heap limit/.test(l));
  const how = a.child.signalCode ?? `exit code ${a.child.exitCode}`;
  return oom ? `agent died (${how}): ${oom.replace(/^FATAL ERROR:\s*/, '').trim()}` : `agent died (${how}): ${logs.slice(-3).join(' | ')}`;
}

/**
 * Installs through `run` (resolves once the agent has the new version, or rejects) and reads the
 * agent's memory before, during and after.
 */
async function measureInstall(agent: AgentProcess, version: number, run: () => Promise<void>): Promise<Install> {
  const rssBeforeBytes = agent.rssBytes();
  const peakBeforeBytes = agent.peakRssBytes();
  let peakBytes = peakBeforeBytes;
  const sampler = setInterval(() => {
    const p = agent.peakRssBytes();
    if (p !== null) peakBytes = p;
  }, SAMPLE_MS);
  const t0 = now();
  let outcome = 'ok';
  try {
    await run();
  } catch (err) {
    // A dying agent closes the control socket first: the CLI may return before the process has gone.
    outcome = await deathOf(agent, `failed: ${(err as Error).message.split('\n')[0]}`);
  } finally {
    clearInterval(sampler);
  }
  const ms = now() - t0;
  if (outcome === 'ok' && !alive(agent)) outcome = await deathOf(agent, 'the agent has gone');
  if (outcome === 'ok') {
    const v = (await agent.status()).snapshotVersion;
    if (v !== version) outcome = `version ${v} in force afterwards, not ${version}`;
  }
  if (outcome !== 'ok') return { outcome, ms, rssBeforeBytes, peakBeforeBytes, peakBytes, rssAfterBytes: null };
  await settle(AFTER_MS);
  const rssAfterBytes = agent.rssBytes();
  peakBytes = agent.peakRssBytes() ?? peakBytes;
  return { outcome, ms, rssBeforeBytes, peakBeforeBytes, peakBytes, rssAfterBytes };
}

export async function footprintSection(o: { progress: (line: string) => void }): Promise<{ figures: FootprintFigures; lines: string[] }> {
  const started = now();
  const maxBytes = DEFAULT_CONFIG.snapshot.maxBytes;
  const memoryMax = unitMemoryMax();
  const heapLimitMB = Math.floor(memoryMax / MB / 2);
  const dir = mkdtempSync(join(tmpdir(), 'ew-bench-footprint-'));
  const agents: AgentProcess[] = [];
  const end = cleanUpOnExit(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    const snap = makeLargestSnapshot(maxBytes, o.progress);
    const snapshotFile = join(dir, 'largest.cose');
    const nextFile = join(dir, 'largest-next.cose');
    const keyFile = join(dir, 'bench.pub.pem');
    writeFileSync(snapshotFile, snap.bytes);
    writeFileSync(nextFile, snap.nextBytes);
    writeFileSync(keyFile, snap.publicKeyPem);
    o.progress(`footprint: ${int(snap.bytes.length)} bytes (${((100 * snap.bytes.length) / maxBytes).toFixed(2)}% of snapshot.maxBytes); verifying and indexing it here, for the breakdown`);
    const held = heldBreakdown(snap);

    /** A fresh agent with the default configuration, idle on the example snapshot for IDLE_MS; trusts the demo key and the bench's. */
    const start = async (name: string, nodeArgs: readonly string[] = [], again = false): Promise<{ agent: AgentProcess; configFile: string; stateDir: string }> => {
      const stateDir = join(dir, name);
      const configFile = join(dir, `${name}.yaml`);
      if (again) {
        // The same state directory and configuration: what systemd's Restart=on-failure starts.
        const agent = await startAgentProcess({ name: `footprint-${name}-again`, configFile, stateDir, nodeArgs: [...packageNodeFlags(), ...nodeArgs] });
        agents.push(agent);
        await settle(IDLE_MS);
        return { agent, configFile, stateDir };
      }
      mkdirSync(stateDir, { recursive: true });
      writeFileSync(
        configFile,
        toYaml({
          stateDir,
          trust: { keys: [DEMO_PUB, keyFile] },
          snapshot: { bootstrap: EXAMPLE_SNAPSHOT, inbox: true },
          // warn, as in the broker section; the install itself logs at info only.
          log: { level: 'warn' },
        }),
      );
      const agent = await startAgentProcess({ name: `footprint-${name}`, configFile, stateDir, nodeArgs: [...packageNodeFlags(), ...nodeArgs] });
      agents.push(agent);
      const s = await agent.status();
      if (s.snapshotVersion !== 1) throw new Error(`footprint ${name} agent: the example snapshot is not in force (version ${s.snapshotVersion})`);
      await settle(IDLE_MS);
      return { agent, configFile, stateDir };
    };
    /** `edgewarden snapshot install FILE` against the agent of `configFile`. */
    const cliInstall = (file: string, configFile: string, stateDir: string, version: number) => async (): Promise<void> => {
      const r = await runCli(['snapshot', 'install', file, '-c', configFile, '--state-dir', stateDir]);
      if (r.code !== 0 || !r.output.includes(`installed snapshot version ${version} into the running agent`)) throw new Error(`snapshot install: ${r.output || `exit code ${r.code}`}`);
    };

    // 1. `edgewarden snapshot install FILE` over the control socket, then the next version over it.
    o.progress(`footprint: fresh agent on the example snapshot, ${IDLE_MS / 1000} s idle, then \`edgewarden snapshot install\`, then the next version`);
    const c = await start('control');
    const control = await measureInstall(c.agent, VERSION, cliInstall(snapshotFile, c.configFile, c.stateDir, VERSION));
    if (control.outcome !== 'ok') throw new Error(`footprint: the install into an agent with no heap limit failed: ${control.outcome}`);
    const replace = await measureInstall(c.agent, VERSION + 1, cliInstall(nextFile, c.configFile, c.stateDir, VERSION + 1));
    if (replace.outcome !== 'ok') throw new Error(`footprint: the replacing install into an agent with no heap limit failed: ${replace.outcome}`);
    const status = await runCli(['status', '-c', c.configFile, '--state-dir', c.stateDir, '--json']);
    await c.agent.stop();

    // 2. Copied into <stateDir>/inbox/, as `cp` writes it (so the inbox waits for it to settle).
    o.progress(`footprint: fresh agent on the example snapshot, ${IDLE_MS / 1000} s idle, then a copy into <stateDir>/inbox/`);
    const b = await start('inbox');
    const inboxDir = join(b.stateDir, 'inbox');
    const target = join(inboxDir, 'largest.cose');
    const inbox = await measureInstall(b.agent, VERSION, async () => {
      const t0 = now();
      copyFileSync(snapshotFile, target);
      while ((await b.agent.status()).snapshotVersion !== VERSION) {
        if (readdirSync(inboxDir).some((n) => n.includes('.refused'))) throw new Error(`inbox refused it: ${readFileSync(`${target}.refused.txt`, 'utf8').trim()}`);
        if (now() - t0 > INBOX_TIMEOUT_MS) throw new Error(`not installed after ${INBOX_TIMEOUT_MS / 1000} s`);
        await settle(POLL_MS);
      }
    });
    if (inbox.outcome !== 'ok') throw new Error(`footprint: the inbox install failed: ${inbox.outcome}`);
    if (existsSync(target)) throw new Error('footprint inbox: the accepted file is still in the inbox');
    await b.agent.stop();

    // 3. As 1, with the heap limit the agent would have under the unit's MemoryMax.
    o.progress(`footprint: as the first, the agent under --max-old-space-size=${heapLimitMB} (the heap limit under MemoryMax)`);
    const l = await start('limited', [`--max-old-space-size=${heapLimitMB}`]);
    const limited = await measureInstall(l.agent, VERSION, cliInstall(snapshotFile, l.configFile, l.stateDir, VERSION));
    const limitedReplace: Install | null = alive(l.agent) && limited.outcome === 'ok' ? await measureInstall(l.agent, VERSION + 1, cliInstall(nextFile, l.configFile, l.stateDir, VERSION + 1)) : null;
    await l.agent.stop();
    // And started again on that state directory (as systemd restarts it after a crash): which version, what peak.
    o.progress('footprint: the limited agent started again on its state directory');
    const again = (await start('limited', [`--max-old-space-size=${heapLimitMB}`], true)).agent;
    const restart = { version: (await again.status()).snapshotVersion, peakBytes: again.peakRssBytes(), rssBytes: again.rssBytes() };
    await again.stop();

    return summarize({ snap, maxBytes, memoryMax, heapLimitMB, held, control, replace, inbox, limited, limitedReplace, restart, cliStatusMs: status.ms, seconds: (now() - started) / 1000 });
  } finally {
    await Promise.all(agents.map((a) => a.stop().catch(() => undefined)));
    end();
  }
}

function summarize(m: {
  snap: LargestSnapshot;
  maxBytes: number;
  memoryMax: number;
  heapLimitMB: number;
  held: ReturnType<typeof heldBreakdown>;
  control: Install;
  replace: Install;
  inbox: Install;
  limited: Install;
  limitedReplace: Install | null;
  restart: { version: number | null; peakBytes: number | null; rssBytes: number | null };
  cliStatusMs: number;
  seconds: number;
}): { figures: FootprintFigures; lines: string[] } {
  const { snap, control, replace, inbox, limited, limitedReplace, restart, held } = m;
  const memoryMaxMB = m.memoryMax / MB;
  const installs = [control, replace, inbox, limited, ...(limitedReplace ? [limitedReplace] : [])];
  const peakMB = Math.max(...installs.map((i) => mb(i.peakBytes)));
  const limitedOk = limited.outcome === 'ok' && limitedReplace?.outcome === 'ok';
  const figures: FootprintFigures = {
    largestSnapshotBytes: snap.bytes.length,
    largestSnapshotMaxBytes: m.maxBytes,
    largestSnapshotThings: snap.things,
    largestSnapshotOtherPrincipals: snap.principals,
    largestSnapshotMemoryMaxMB: r1(memoryMaxMB),
    largestSnapshotBaselineRssMB: r1(mb(control.rssBeforeBytes)),
    largestSnapshotBaselinePeakRssMB: r1(mb(control.peakBeforeBytes)),
    largestSnapshotInstallMs: Math.round(control.ms),
    largestSnapshotPeakRssMB: r1(mb(control.peakBytes)),
    largestSnapshotRssAfterMB: r1(mb(control.rssAfterBytes)),
    largestSnapshotCliStatusMs: Math.round(m.cliStatusMs),
    largestSnapshotReplaceInstallMs: Math.round(replace.ms),
    largestSnapshotReplacePeakRssMB: r1(mb(replace.peakBytes)),
    largestSnapshotReplaceRssAfterMB: r1(mb(replace.rssAfterBytes)),
    largestSnapshotInboxBaselineRssMB: r1(mb(inbox.rssBeforeBytes)),
    largestSnapshotInboxInstallMs: Math.round(inbox.ms),
    largestSnapshotInboxPeakRssMB: r1(mb(inbox.peakBytes)),
    largestSnapshotInboxRssAfterMB: r1(mb(inbox.rssAfterBytes)),
    largestSnapshotHeapLimitMB: m.heapLimitMB,
    largestSnapshotHeapLimitedInstall: limited.outcome,
    largestSnapshotHeapLimitedPeakRssMB: r1(mb(limited.peakBytes)),
    largestSnapshotHeapLimitedReplace: limitedReplace?.outcome ?? 'not run',
    largestSnapshotHeapLimitedReplacePeakRssMB: r1(mb(limitedReplace?.peakBytes ?? null)),
    largestSnapshotHeapLimitedRestartVersion: restart.version ?? 0,
    largestSnapshotHeapLimitedRestartPeakRssMB: r1(mb(restart.peakBytes)),
    largestSnapshotHeapLimitedRestartRssMB: r1(mb(restart.rssBytes)),
    largestSnapshotHighestPeakRssMB: r1(peakMB),
    largestSnapshotHighestPeakPercentOfMemoryMax: r1((100 * peakMB) / memoryMaxMB),
    largestSnapshotHeapPayloadMB: r1(held.payloadHeapMB),
    largestSnapshotHeapIndexMB: r1(held.indexHeapMB),
    largestSnapshotIndexArrayBuffersMB: r1(held.indexArrayBuffersMB),
    largestSnapshotVerifyMs: Math.round(held.verifyMs),
    largestSnapshotIndexMs: Math.round(held.indexMs),
    largestSnapshotGenerateAndSignMs: Math.round(snap.generateMs),
    meetsTargetLargestSnapshotUnderMemoryMax: peakMB < memoryMaxMB && limitedOk,
    footprintSectionSeconds: r1(m.seconds),
  };
  const f = (b: number | null): string => `${mb(b).toFixed(1)} MB`;
  const memory = (i: Install): string =>
    i.outcome === 'ok'
      ? `RSS ${f(i.rssBeforeBytes)} (peak so far ${f(i.peakBeforeBytes)}) → peak ${f(i.peakBytes)} → ${f(i.rssAfterBytes)} ${AFTER_MS / 1000} s after; ${int(i.ms)} ms`
      : `RSS ${f(i.rssBeforeBytes)} → peak ${f(i.peakBytes)} (last reading), after ${int(i.ms)} ms: ${i.outcome}`;
  const lines = [
    `Footprint — the largest snapshot the default snapshot.maxBytes (${int(m.maxBytes)}) accepts, into the agent (default configuration, idle on the example snapshot)`,
    `  snapshot                   ${int(snap.bytes.length)} bytes (${((100 * snap.bytes.length) / m.maxBytes).toFixed(2)}% of the limit): ${int(snap.things)} things, ${int(snap.principals)} other principals (synthetic.ts)`,
    `  snapshot install (CLI)     ${memory(control)}`,
    `                             (the CLI from start to exit; \`edgewarden status\` alone takes ${int(m.cliStatusMs)} ms)`,
    `  then the next version      ${memory(replace)}`,
    `  copied into the inbox      ${memory(inbox)}`,
    `                             (copy to version in force; includes the inbox's 1 s wait for the file to settle)`,
    `  heap limit of the unit     --max-old-space-size=${m.heapLimitMB} (${HEAP_LIMIT_NOTE}):`,
    `    snapshot install         ${memory(limited)}`,
    `    then the next version    ${limitedReplace ? memory(limitedReplace) : 'not run'}`,
    `    started again on it      version ${restart.version} in force (${VERSION} installed, ${VERSION + 1} the next); RSS ${f(restart.rssBytes)} ${IDLE_MS / 1000} s after the start, peak ${f(restart.peakBytes)}`,
    `  MemoryMax (systemd unit)   ${memoryMaxMB.toFixed(0)} MB: highest peak ${peakMB.toFixed(1)} MB = ${((100 * peakMB) / memoryMaxMB).toFixed(1)}%: ${peakMB < memoryMaxMB ? `${(memoryMaxMB - peakMB).toFixed(1)} MB to spare` : 'OVER'}` +
      `${limitedOk ? '' : '; under the heap limit the agent did not survive'}: ${figures.meetsTargetLargestSnapshotUnderMemoryMax ? 'meets target' : 'MISSES TARGET'}`,
    `  held for it (this process, after a full GC): payload ${held.payloadHeapMB.toFixed(1)} MB of heap, index ${held.indexHeapMB.toFixed(1)} MB of heap + ${held.indexArrayBuffersMB.toFixed(1)} MB of typed arrays,`,
    `    the snapshot's bytes ${(snap.bytes.length / MB).toFixed(1)} MB; verify ${int(held.verifyMs)} ms, index ${int(held.indexMs)} ms`,
    `  (generating and signing the snapshot: ${int(snap.generateMs)} ms in ${snap.attempts} attempt${snap.attempts === 1 ? '' : 's'}; section ${m.seconds.toFixed(1)} s)`,
  ];
  return { figures, lines };
}
