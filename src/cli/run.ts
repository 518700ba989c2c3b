// `edgewarden run`: the agent, until SIGTERM or SIGINT.
import { EwError, isEwError } from '../errors.js';
import { loadConfig, bundledPaths, type AgentConfig } from '../config/load.js';
import { LOG_LEVELS, isLogLevel, type LogLevel } from '../config/log-levels.js';
import { Agent } from '../agent/agent.js';
import { createLogger, logMemoryPhase } from '../agent/log.js';
import { sdNotify, startWatchdog, watchdogIntervalMs } from '../agent/sd-notify.js';
import { packageRoot, packageVersion } from './io.js';
import type { Io } from './output.js';
import { getHeapStatistics } from 'node:v8';

export function parsePort(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[0-9]{1,5}$/.test(v) || Number(v) > 65535) throw new Error(`--port must be 0-65535, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** `--log-level L`, or `-v` (debug) / `-vv` (trace); either overrides `log.level`, also at reload. */
export function logLevelOption(opts: { verbose?: number; logLevel?: string }): LogLevel | undefined {
  const verbose = opts.verbose ?? 0;
  if (opts.logLevel !== undefined && verbose > 0) throw new EwError('EW_USAGE', 'give -v or --log-level, not both');
  if (opts.logLevel !== undefined) {
    if (!isLogLevel(opts.logLevel)) throw new EwError('EW_USAGE', `--log-level must be one of ${LOG_LEVELS.join(', ')}; got ${JSON.stringify(opts.logLevel)}`);
    return opts.logLevel;
  }
  if (verbose === 0) return undefined;
  return verbose === 1 ? 'debug' : 'trace';
}

/** True when the configuration enforces nothing (config/conformance.yaml). */
export function isOpenBroker(c: AgentConfig): boolean {
  return !c.topics.thingMap && c.topics.rules.some((r) => r.pattern === '#' && r.who === 'anonymous' && r.access === 'readwrite');
}

export interface RunOptions {
  config?: string;
  port?: string;
  stateDir?: string;
  /** How many times -v was given. */
  verbose?: number;
  logLevel?: string;
}

export async function runCommand(opts: RunOptions, io: Io): Promise<number> {
  const afterImports = process.memoryUsage();
  const port = parsePort(opts.port);
  const logLevel = logLevelOption(opts);
  const load = () =>
    loadConfig({
      ...(opts.config === undefined ? {} : { path: opts.config }),
      overrides: {
        ...(port === undefined ? {} : { port }),
        ...(opts.stateDir === undefined ? {} : { stateDir: opts.stateDir }),
        ...(logLevel === undefined ? {} : { logLevel }),
      },
      bundled: bundledPaths(packageRoot()),
    });
  const loaded = load();
  const config = loaded.config;
  const log = createLogger(config.log.level);
  const version = packageVersion();
  log.info({ version, node: process.version, nodeFlags: process.execArgv, heapLimitMB: Math.round(getHeapStatistics().heap_size_limit / 1048576), config: loaded.source, stateDir: config.stateDir, gateway: config.gateway.id }, 'starting edgewarden');
  log.debug({ configuration: config }, 'configuration in force');
  logMemoryPhase(log, 'imports', afterImports);
  logMemoryPhase(log, 'config');
  for (const w of loaded.warnings) log.warn(w);
  if (isOpenBroker(config)) {
    const banner = 'OPEN BROKER: this configuration enforces NOTHING (anonymous clients may publish and subscribe to every topic); for MQTT conformance testing only';
    log.warn(banner);
    io.err(`edgewarden: WARNING: ${banner}`);
  }
  // Signals: one listener each for the agent's whole life. A listener removed and another added
  // would drop a signal that arrived in between (libuv discards the pending event of the handle
  // closed): under load a SIGTERM sent right after `ready` was lost, and the agent ran on.
  // During start-up SIGTERM/SIGINT stop the agent as soon as it has started (its files are then
  // closed cleanly, its lock released), instead of killing it halfway; SIGHUP waits for it.
  let early: string | undefined;
  let onStop: ((signal: string) => void) | undefined;
  let onHup: (() => void) | undefined;
  const stopSignal = (signal: string) => () => {
    if (onStop) return onStop(signal);
    if (early !== undefined) return;
    early = signal;
    log.info({ signal }, 'stop requested during start-up: stopping once started');
  };
  process.on('SIGTERM', stopSignal('SIGTERM'));
  process.on('SIGINT', stopSignal('SIGINT'));
  process.on('SIGHUP', () => (onHup ? onHup() : log.info('SIGHUP during start-up: the configuration is read as the agent starts')));
  let agent: Agent;
  try {
    agent = await Agent.start(config, log, { version, node: process.version });
  } catch (err) {
    // Under systemd (Type=notify) the exit before READY=1 fails `systemctl start` at once; the
    // status line says why in `systemctl status`.
    await sdNotify([`STATUS=start failed: ${(isEwError(err) ? `${err.code}: ${err.message}` : (err as Error).message).replace(/\n/g, ' ')}`]);
    throw err;
  }
  agent.setConfigWarnings(loaded.warnings);
  const notified = (r: { error?: string }) => r.error && log.warn({ err: r.error }, 'systemd notification failed');
  // WatchdogSec= in the unit: once READY=1 is sent, ping while the event loop turns; a hung agent
  // is restarted by systemd.
  const watchdogMs = watchdogIntervalMs();
  let stopping = false;
  let stopWatchdog = (): void => undefined;
  if (early === undefined) {
    void sdNotify(['READY=1', 'STATUS=serving MQTT']).then((r) => {
      notified(r);
      if (watchdogMs === undefined || stopping) return;
      stopWatchdog = startWatchdog(watchdogMs, () => sdNotify(['WATCHDOG=1']).then(notified));
      log.info({ intervalMs: watchdogMs }, 'systemd watchdog: pinging');
    });
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      if (stopping) return void log.info({ signal }, 'already stopping');
      stopping = true;
      log.info({ signal }, 'stopping');
      void sdNotify(['STOPPING=1']).then(notified);
      agent.stop().then(
        () => {
          stopWatchdog();
          log.info('stopped');
          log.flush();
          resolve();
        },
        (err: Error) => {
          stopWatchdog();
          log.error({ err: err.message }, 'stop failed');
          resolve();
        },
      );
    };
    // SIGHUP: read the configuration file again; a bad one is logged with its keys and changes nothing.
    let reloading = Promise.resolve();
    const reload = () => {
      reloading = reloading.then(async () => {
        log.info({ config: loaded.source }, 'SIGHUP: reloading the configuration');
        try {
          const next = load();
          for (const w of next.warnings) log.warn(w);
          await agent.reload(next.config);
          agent.setConfigWarnings(next.warnings);
        } catch (err) {
          const issues = isEwError(err) ? err.issues.map((i) => `${i.path}: ${i.message}`) : [];
          log.error({ code: isEwError(err) ? err.code : undefined, err: (err as Error).message, issues }, 'configuration not reloaded: the running one stays in force');
        }
      });
    };
    onHup = reload;
    onStop = stop;
    if (early !== undefined) stop(early);
  });
  return 0;
}
