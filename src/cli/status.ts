// `edgewarden status`: the running agent's state, from its control socket: snapshot in force and
// its expiry, the time floor, connected clients, the cloud link and its queue, the audit log.
import { loadConfig, bundledPaths } from '../config/load.js';
import { controlRequest } from '../agent/control.js';
import type { AgentStatus } from '../agent/agent.js';
import { EwError, type ErrorCode } from '../errors.js';
import { packageRoot } from './io.js';
import type { Io } from './output.js';

export async function statusCommand(opts: { config?: string; stateDir?: string; json?: boolean }, io: Io): Promise<number> {
  const { config } = loadConfig({
    ...(opts.config === undefined ? {} : { path: opts.config }),
    overrides: opts.stateDir === undefined ? {} : { stateDir: opts.stateDir },
    bundled: bundledPaths(packageRoot()),
  });
  let res;
  try {
    res = await controlRequest(config.stateDir, { cmd: 'status' }, 10_000);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') {
      io.err(`no agent is running with the state directory ${config.stateDir} (no control socket)`);
      return 1;
    }
    if (code === 'EACCES') throw new EwError('EW_STORE_IO', 'permission denied on the control socket: run as the agent\'s user (edgewarden) or root', { where: config.stateDir, cause: err });
    throw err;
  }
  if (!res.ok) throw new EwError(res.code as ErrorCode, res.message);
  const s = res.status as AgentStatus & { audit: AgentStatus['audit'] & { uploadBacklogBytes?: number } };
  if (opts.json) {
    io.out(JSON.stringify(s, null, 2));
    return 0;
  }
  const b = s.broker;
  const lines: [string, string][] = [
    ['gateway', s.gatewayId],
    ['snapshot', s.snapshotVersion === null ? 'NONE: every request is denied (NO_SNAPSHOT)' : `version ${s.snapshotVersion}, issued ${s.snapshotIssuedAt}`],
    ['expires', s.snapshotExpiresAt === null ? '-' : `${s.snapshotExpiresAt}${s.expired ? ' (EXPIRED)' : ''}`],
    ['time floor', s.timeFloor],
    ['listeners', [s.listeners.tcp === undefined ? null : `tcp ${s.listeners.tcp}`, s.listeners.tls === undefined ? null : `tls ${s.listeners.tls}`].filter(Boolean).join(', ') || 'none'],
    ['clients', `${b['connected'] ?? 0} connected (${b['connections'] ?? 0} connections since start, ${b['refusedConnections'] ?? 0} refused), ${b['inflightWindowFull'] ?? 0} filled their in-flight window`],
    ['refused', refusedLine(s.refused ?? {})],
    ['messages', `${b['publishesIn'] ?? 0} publishes in, ${b['publishesDenied'] ?? 0} denied, ${b['deliveriesFiltered'] ?? 0} deliveries filtered, ${b['deliveriesWaited'] ?? 0} waited for an in-flight window (${b['deliveriesDroppedWaiting'] ?? 0} dropped)`],
    ['sessions', `${b['sessionsSessions'] ?? 0} persistent, ${b['sessionsQueued'] ?? 0} messages queued (${b['sessionsActionsQueued'] ?? 0} actions), ${b['sessionsRetained'] ?? 0} retained`],
    ['actions', `${b['actionsRefusedAtDelivery'] ?? 0} refused at delivery, ${b['actionsExpired'] ?? 0} expired, ${b['actionsRetainIgnored'] ?? 0} retain flags ignored`],
  ];
  if (s.cloud) {
    const l = s.cloud.link as { state: string; url: string; lastError: string | null; sent: number };
    const q = s.cloud.queue;
    lines.push(['cloud link', `${l.state} (${l.url})${l.lastError ? `, last error: ${l.lastError}` : ''}`]);
    lines.push(['queue', `${q.depth} messages (${q.bytes} bytes on disk), ${q.dropped} dropped (queue full or damaged on disk), ${l.sent} sent`]);
  } else lines.push(['cloud link', 'disabled (cloud.enabled is false)']);
  const a = s.audit;
  lines.push(['audit', `${a.recorded} records, ${a.pendingEntries} not yet on disk, ${a.droppedEntries} lost${s.audit.uploadBacklogBytes === undefined ? '' : `, ${s.audit.uploadBacklogBytes} bytes not yet uploaded`}`]);
  if (a.lostBeforeUpload > 0 && a.lastLoss) {
    const l = a.lastLoss;
    lines.push(['audit lost', `${a.lostBeforeUpload} rotated away before upload (disk bound); last: ${l.count} record(s), seq ${l.fromSeq}-${l.toSeq}, ${l.from} to ${l.to}`]);
  }
  if (s.keys) {
    const k = s.keys;
    lines.push(['keys', `${k.configured.length} configured: ${k.configured.join(', ')}`]);
    for (const l of k.learned) lines.push(['learned', `${l.kid} (endorsed by ${l.endorsedBy}, ${l.at})`]);
    for (const r of k.retired) lines.push(['retired', `${r.kid} ${r.passed ? 'since' : 'at'} ${r.at}`]);
  }
  lines.push(['started', s.startedAt]);
  for (const w of s.warnings ?? []) lines.push(['warning', w]);
  const w = Math.max(...lines.map(([k]) => k.length));
  for (const [k, v] of lines) io.out(`${k.padEnd(w)}  ${v}`);
  return 0;
}

/** Refused connections by reason, most first: `BAD_CREDENTIALS 3, ANONYMOUS_REFUSED 1` (docs/reasons.md). */
function refusedLine(byReason: Record<string, number>): string {
  const entries = Object.entries(byReason).filter(([, n]) => n > 0);
  if (entries.length === 0) return 'none';
  entries.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  return `${entries.map(([r, n]) => `${r} ${n}`).join(', ')}  (reasons: docs/reasons.md; lines: journalctl -u edgewarden -p warning)`;
}
