// The startup section of the bench: the agent's resident memory and start time against the footprint
// budget (issue 13), next to a bare `node` process, and what the V8 flags of the systemd unit change.
//
//   bare node   `node -e 'setInterval(() => {}, 1000)'`: what any Node process costs (the floor)
//   defaults    `edgewarden run --state-dir DIR --port 0`, the embedded defaults (the README's
//               `npm start`: bundled example snapshot, demo key, log level info): spawn to the "ready"
//               log line, and VmRSS IDLE_MS after it
//   flags       the same with the unit's V8 flags (NODE_OPTIONS of systemd/edgewarden.service)
//   cloud+metrics  the same with cloud.enabled (to a closed port: the link retries) and
//               metrics.enabled: what the modules loaded only when configured cost
//   executable  the single executable (out/, `npm run package`), when built, with the unit's flags as NODE_OPTIONS
//   1,000 devices  the broker section's connect step (broker.ts connectDevices): RSS idle and with
//               1,000 devices connected, with and without the unit's flags
//   bare aedes  aedes on node:net with its defaults (bare-aedes.ts), with the unit's flags: idle, and
//               with the same 1,000 devices connected: the reference the agent is held against
//
// The kinds alternate within each round, so a busy machine weighs on all of them alike; each figure
// is the median of its rounds. The executable's size is read from out/ when `npm run package` has
// built it. See bench/README.md.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as toYaml } from 'yaml';
import { cleanUpOnExit, median, packageNodeFlags, procStatusBytes, startAgentProcess, type AgentProcess } from './agent-process.js';
import { connectBareAedes, startBareAedes } from './bare-aedes.js';
import { connectDevices, DEVICES, Generator, makeSnapshot } from './broker.js';
import { MB, now, settle } from './measure.js';

export const TARGET_IDLE_RSS_MB = 60;
export const TARGET_1000_DEVICES_RSS_MB = 100;
export const TARGET_READY_MS = 500;

const ROUNDS = 5;
/** The agent (and the bare node) run this long after "ready" before VmRSS is read. */
const IDLE_MS = 2000;

const ROOT = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../' : '../', import.meta.url));
const UNIT_FILE = join(ROOT, 'systemd', 'edgewarden.service');

export type StartupFigures = Record<string, string | number | boolean | number[] | null>;

/** The V8 flags the unit gives the agent: its Environment=NODE_OPTIONS=..., split; [] when it sets none. */
export function unitNodeOptions(file = UNIT_FILE): string[] {
  try {
    const m = /^Environment="?NODE_OPTIONS=([^"\n]*)"?\s*$/m.exec(readFileSync(file, 'utf8'));
    return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : [];
  } catch {
    return [];
  }
}

/**
 * The flags of the agent as the unit runs it, for `node bin/edgewarden.js`: the unit's NODE_OPTIONS,
 * then the executable's own flags, which win over NODE_OPTIONS where both set one (flags on the
 * command line, and a SEA's execArgv, are read after NODE_OPTIONS).
 */
export function unitAgentFlags(): string[] {
  return [...unitNodeOptions(), ...packageNodeFlags()];
}

/** out/edgewarden-<version>-linux-x64/edgewarden (`npm run package`), if built. */
function executable(): { file: string; bytes: number } | null {
  const out = join(ROOT, 'out');
  if (!existsSync(out)) return null;
  for (const d of readdirSync(out).sort()) {
    if (!/^edgewarden-.*-linux-x64$/.test(d)) continue;
    const file = join(out, d, 'edgewarden');
    if (existsSync(file)) return { file, bytes: statSync(file).size };
  }
  return null;
}

/** A bare node process idle for IDLE_MS: its VmRSS. */
async function bareNodeRss(): Promise<number | null> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  try {
    await settle(IDLE_MS);
    return child.pid === undefined ? null : procStatusBytes(child.pid, 'VmRSS');
  } finally {
    child.kill('SIGKILL');
  }
}

/** Bare aedes with `nodeArgs`, idle for IDLE_MS after it listens: its VmRSS. */
async function bareAedesRss(nodeArgs: readonly string[]): Promise<number | null> {
  const bare = await startBareAedes(nodeArgs);
  try {
    await settle(IDLE_MS);
    return bare.rssBytes();
  } finally {
    await bare.stop();
  }
}

interface Idle {
  readyMs: number;
  rss: number;
}

export async function startupSection(o: { progress: (line: string) => void }): Promise<{ figures: StartupFigures; lines: string[] }> {
  const started = now();
  const dir = mkdtempSync(join(tmpdir(), 'ew-bench-startup-'));
  const agents: AgentProcess[] = [];
  let gen: Generator | undefined;
  const end = cleanUpOnExit(() => {
    gen?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    // `node bin/edgewarden.js` gets the flags the executable runs with under the unit; the executable
    // itself gets the unit's NODE_OPTIONS (its own flags are built in).
    const flags = unitAgentFlags();
    const unitEnv = unitNodeOptions();
    const configured = join(dir, 'cloud-metrics.yaml');
    writeFileSync(
      configured,
      toYaml({
        // As the embedded defaults (the bundled example snapshot, the demo key), plus the two.
        trust: { keys: [join(ROOT, 'config', 'demo-keys', 'demo.pub.pem')] },
        snapshot: { bootstrap: join(ROOT, 'config', 'example-snapshot.cose') },
        cloud: { enabled: true, url: 'mqtt://127.0.0.1:9', reconnectMinMs: 1000 },
        metrics: { enabled: true, port: 0 },
      }),
    );
    let n = 0;
    /** A fresh agent: spawn to "ready", then VmRSS IDLE_MS later. */
    const idle = async (name: string, nodeArgs: readonly string[], configFile?: string, exe?: string): Promise<Idle> => {
      const stateDir = join(dir, `${name}-${n++}`);
      mkdirSync(stateDir, { recursive: true });
      const a = await startAgentProcess({ name, stateDir, nodeArgs, ...(configFile === undefined ? {} : { configFile }), ...(exe === undefined ? {} : { executable: exe }) });
      agents.push(a);
      try {
        const readyMs = a.readyMs();
        if (readyMs === null) throw new Error(`${name} agent: no "ready" line; output:\n${a.logs().slice(-10).join('\n')}`);
        if ((await a.status()).snapshotVersion === null) throw new Error(`${name} agent: no snapshot in force`);
        await settle(IDLE_MS);
        const rss = a.rssBytes();
        if (rss === null) throw new Error(`${name} agent: no /proc/${a.pid}/status`);
        return { readyMs, rss };
      } finally {
        await a.stop();
      }
    };
    const bare: number[] = [];
    const defaults: Idle[] = [];
    const withFlags: Idle[] = [];
    const withCloud: Idle[] = [];
    const withExe: Idle[] = [];
    const aedes: number[] = [];
    const exe = executable();
    for (let r = 0; r < ROUNDS; r++) {
      o.progress(`startup: round ${r + 1} of ${ROUNDS}: bare node, bare aedes, the agent on its embedded defaults${flags.length ? `, with ${flags.join(' ')}` : ''}, with cloud and metrics enabled`);
      const b = await bareNodeRss();
      if (b !== null) bare.push(b);
      const a = await bareAedesRss(flags);
      if (a !== null) aedes.push(a);
      defaults.push(await idle('defaults', []));
      if (flags.length > 0) withFlags.push(await idle('flags', flags));
      withCloud.push(await idle('cloud-metrics', [], configured));
      if (exe) withExe.push(await idle('executable', unitEnv, undefined, exe.file));
    }

    o.progress(`startup: ${DEVICES} devices connect to a fresh enforced agent (broker section's snapshot)${flags.length ? `, without and with ${flags.join(' ')}` : ''}`);
    const snap = makeSnapshot(dir);
    gen = new Generator();
    const connected = await connectDevices({ gen, dir, name: 'startup-connect', snap, track: (a) => agents.push(a) });
    const connectedFlags = flags.length > 0 ? await connectDevices({ gen, dir, name: 'startup-connect-flags', snap, nodeArgs: flags, track: (a) => agents.push(a) }) : null;
    o.progress(`startup: ${DEVICES} devices connect to bare aedes${flags.length ? ` with ${flags.join(' ')}` : ''}`);
    const aedesConnected = await connectBareAedes(gen, flags, 1000);
    if (aedesConnected.accepted !== DEVICES) throw new Error(`bare aedes accepted ${aedesConnected.accepted} of ${DEVICES} devices`);

    return summarize({ flags, unitEnv, bare, aedes, aedesConnected, defaults, withFlags, withCloud, withExe, connected, connectedFlags, exe, seconds: (now() - started) / 1000 });
  } finally {
    await Promise.all(agents.map((a) => a.stop().catch(() => undefined)));
    end();
  }
}

const r1 = (x: number): number => Math.round(x * 10) / 10;
const mb = (b: number | null): number => (b === null ? NaN : b / MB);

function summarize(m: {
  flags: string[];
  unitEnv: string[];
  bare: number[];
  aedes: number[];
  aedesConnected: { rssIdle: number | null; rssConnected: number | null };
  defaults: Idle[];
  withFlags: Idle[];
  withCloud: Idle[];
  withExe: Idle[];
  connected: Awaited<ReturnType<typeof connectDevices>>;
  connectedFlags: Awaited<ReturnType<typeof connectDevices>> | null;
  exe: { file: string; bytes: number } | null;
  seconds: number;
}): { figures: StartupFigures; lines: string[] } {
  const rssMB = (xs: Idle[]): number[] => xs.map((x) => r1(mb(x.rss)));
  const readyMs = (xs: Idle[]): number[] => xs.map((x) => Math.round(x.readyMs));
  const bareMB = median(m.bare.map(mb));
  const aedesMB = median(m.aedes.map(mb));
  const aedesDevicesMB = mb(m.aedesConnected.rssConnected);
  const idleMB = median(m.defaults.map((x) => mb(x.rss)));
  const flagsMB = m.withFlags.length ? median(m.withFlags.map((x) => mb(x.rss))) : NaN;
  const cloudMB = median(m.withCloud.map((x) => mb(x.rss)));
  const ready = median(m.defaults.map((x) => x.readyMs));
  const flagsReady = m.withFlags.length ? median(m.withFlags.map((x) => x.readyMs)) : NaN;
  const cloudReady = median(m.withCloud.map((x) => x.readyMs));
  const c = m.connected;
  const cf = m.connectedFlags;
  const devicesMB = mb(c.rssConnected);
  // The target applies to the agent as the unit starts it: with its flags, when the unit sets any.
  const unitIdleMB = m.flags.length ? flagsMB : idleMB;
  const unitDevicesMB = cf ? mb(cf.rssConnected) : devicesMB;
  const figures: StartupFigures = {
    startupRounds: m.defaults.length,
    startupIdleAfterReadyMs: IDLE_MS,
    startupBareNodeRssMB: r1(bareMB),
    startupBareNodeRssMBRounds: m.bare.map((b) => r1(mb(b))),
    startupBareAedesRssMB: r1(aedesMB),
    startupBareAedesRssMBRounds: m.aedes.map((b) => r1(mb(b))),
    startupBareAedes1000DevicesIdleRssMB: r1(mb(m.aedesConnected.rssIdle)),
    startupBareAedes1000DevicesRssMB: r1(aedesDevicesMB),
    startupIdleRssMB: r1(idleMB),
    startupIdleRssMBRounds: rssMB(m.defaults),
    startupReadyMs: Math.round(ready),
    startupReadyMsRounds: readyMs(m.defaults),
    startupUnitNodeOptions: m.unitEnv.join(' '),
    startupUnitAgentFlags: m.flags.join(' '),
    startupIdleRssUnitFlagsMB: m.withFlags.length ? r1(flagsMB) : null,
    startupIdleRssUnitFlagsMBRounds: rssMB(m.withFlags),
    startupReadyUnitFlagsMs: m.withFlags.length ? Math.round(flagsReady) : null,
    startupIdleRssCloudMetricsMB: r1(cloudMB),
    startupIdleRssCloudMetricsMBRounds: rssMB(m.withCloud),
    startupReadyCloudMetricsMs: Math.round(cloudReady),
    startup1000DevicesIdleRssMB: r1(mb(c.rssIdle)),
    startup1000DevicesRssMB: r1(devicesMB),
    startup1000DevicesConnected: c.connectedNow,
    startup1000DevicesIdleRssUnitFlagsMB: cf ? r1(mb(cf.rssIdle)) : null,
    startup1000DevicesRssUnitFlagsMB: cf ? r1(mb(cf.rssConnected)) : null,
    startupExecutableBytes: m.exe?.bytes ?? null,
    startupExecutableIdleRssMB: m.withExe.length ? r1(median(m.withExe.map((x) => mb(x.rss)))) : null,
    startupExecutableIdleRssMBRounds: rssMB(m.withExe),
    startupExecutableReadyMs: m.withExe.length ? Math.round(median(m.withExe.map((x) => x.readyMs))) : null,
    targetStartupIdleRssMBMax: TARGET_IDLE_RSS_MB,
    targetStartup1000DevicesRssMBMax: TARGET_1000_DEVICES_RSS_MB,
    targetStartupReadyMsMax: TARGET_READY_MS,
    meetsTargetStartupIdleRss: unitIdleMB <= TARGET_IDLE_RSS_MB,
    meetsTargetStartup1000DevicesRss: unitDevicesMB <= TARGET_1000_DEVICES_RSS_MB,
    meetsTargetStartupReady: (m.flags.length ? flagsReady : ready) <= TARGET_READY_MS,
    startupSectionSeconds: r1(m.seconds),
  };
  const verdict = (ok: boolean): string => (ok ? 'meets target' : 'MISSES TARGET');
  const list = (xs: number[]): string => xs.map((x) => x.toFixed(1)).join(', ');
  const flagsName = m.flags.join(' ') || '(none)';
  const lines = [
    `Startup and idle footprint — fresh processes, ${m.defaults.length} rounds alternating the kinds, median; VmRSS ${IDLE_MS / 1000} s after "ready"`,
    `  bare node (setInterval)     RSS ${bareMB.toFixed(1)} MB   (${list(m.bare.map(mb))})`,
    `  agent, embedded defaults    RSS ${idleMB.toFixed(1)} MB = bare + ${(idleMB - bareMB).toFixed(1)} MB   (${list(m.defaults.map((x) => mb(x.rss)))}); spawn → ready ${Math.round(ready)} ms (${readyMs(m.defaults).join(', ')})`,
    ...(m.withFlags.length
      ? [`  as the unit runs it: ${flagsName}`, `                              RSS ${flagsMB.toFixed(1)} MB   (${list(m.withFlags.map((x) => mb(x.rss)))}); spawn → ready ${Math.round(flagsReady)} ms (${readyMs(m.withFlags).join(', ')})`]
      : ['  the unit sets no NODE_OPTIONS']),
    `  cloud link + metrics on     RSS ${cloudMB.toFixed(1)} MB = defaults + ${(cloudMB - idleMB).toFixed(1)} MB   (the modules loaded only when configured); spawn → ready ${Math.round(cloudReady)} ms`,
    `  ${DEVICES.toLocaleString('en-US')} devices connected    RSS ${mb(c.rssIdle).toFixed(1)} MB idle → ${devicesMB.toFixed(1)} MB (enforced agent, broker section's snapshot)` +
      (cf ? `; with the unit's flags ${mb(cf.rssIdle).toFixed(1)} → ${mb(cf.rssConnected).toFixed(1)} MB` : ''),
    `  bare aedes (reference)      RSS ${aedesMB.toFixed(1)} MB idle   (${list(m.aedes.map(mb))}); ${mb(m.aedesConnected.rssIdle).toFixed(1)} → ${aedesDevicesMB.toFixed(1)} MB with the ${DEVICES.toLocaleString('en-US')} devices` +
      `${m.flags.length ? `, the unit's flags` : ''}; the agent as the unit runs it: +${(unitIdleMB - aedesMB).toFixed(1)} MB idle, +${(unitDevicesMB - aedesDevicesMB).toFixed(1)} MB with them`,
    `  executable                  ${m.exe ? `${m.exe.bytes.toLocaleString('en-US')} bytes (${(m.exe.bytes / MB).toFixed(1)} MB), ${m.exe.file.slice(ROOT.length)}` : 'not built (npm run package builds out/edgewarden-<version>-linux-x64/edgewarden)'}`,
    ...(m.withExe.length
      ? [`    run on the embedded defaults, NODE_OPTIONS=${m.unitEnv.join(' ') || '(none)'}: RSS ${median(m.withExe.map((x) => mb(x.rss))).toFixed(1)} MB (${list(m.withExe.map((x) => mb(x.rss)))}); spawn → ready ${Math.round(median(m.withExe.map((x) => x.readyMs)))} ms`]
      : []),
    `  targets (as the unit runs it${m.flags.length ? `, ${flagsName}` : ''}): idle ≤ ${TARGET_IDLE_RSS_MB} MB: ${verdict(figures.meetsTargetStartupIdleRss as boolean)} (${unitIdleMB.toFixed(1)}); ` +
      `${DEVICES.toLocaleString('en-US')} devices ≤ ${TARGET_1000_DEVICES_RSS_MB} MB: ${verdict(figures.meetsTargetStartup1000DevicesRss as boolean)} (${unitDevicesMB.toFixed(1)}); ` +
      `ready ≤ ${TARGET_READY_MS} ms: ${verdict(figures.meetsTargetStartupReady as boolean)}`,
    `  (startup section took ${m.seconds.toFixed(1)} s)`,
  ];
  return { figures, lines };
}
