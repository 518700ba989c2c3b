// `edgewarden explain`: why a principal may or may not do something, for the gateway as it is.
//   -p P -P PERMISSION [--thing T]        decide, with each rule
//   -p P --topic T [--publish|--subscribe] the broker's decision for that MQTT topic (./explain-topic.ts)
//   --client-id ID [--topic T | -P ...]   a client connected to the running agent (control socket),
//                                         and the same answers for its principal
// From the snapshot in force of the installed agent, or from `-s FILE` (./explain-source.ts).
// Exit 0 allow, 3 deny; 1 for an error (no snapshot installed, no agent, no such client).
import { explain, type Trace } from '../decide/decide.js';
import { DENY, DENY_REASONS, type Decision } from '../decide/reasons.js';
import { PRINCIPAL_KIND_NAMES, recordOf, type PrincipalKind } from '../decide/policy-index.js';
import { compileTopicMap, compileTopicRules } from '../topics/index.js';
import { controlRequest } from '../agent/control.js';
import type { ClientInfo } from '../broker/client-info.js';
import { EwError, type ErrorCode } from '../errors.js';
import { iso, type Io } from './output.js';
import { agentConfig, explainSource, type ExplainSource, type SourceOptions } from './explain-source.js';
import { explainTopic, subjectOf, type Direction } from './explain-topic.js';

export interface ExplainOptions extends SourceOptions {
  principal?: string;
  permission?: string;
  thing?: string;
  topic?: string;
  publish?: boolean;
  subscribe?: boolean;
  clientId?: string;
  json?: boolean;
}

export async function explainCommand(opts: ExplainOptions, io: Io): Promise<number> {
  checkUsage(opts);
  let client: ClientInfo | undefined;
  let liveVersion: number | null = null;
  if (opts.clientId !== undefined) {
    const live = await liveClient(opts, opts.clientId, io);
    if (live === null) return 1;
    client = live.client;
    liveVersion = live.snapshotVersion;
    if (opts.topic === undefined && opts.permission === undefined) {
      if (opts.json) io.out(JSON.stringify({ client }, null, 2));
      else printClient(client, io);
      return 0;
    }
  }
  const src = await explainSource(opts);
  if (client && liveVersion !== src.version) {
    io.err(`note: the running agent holds snapshot version ${liveVersion ?? 'none'}; this answer is from version ${src.version} (${src.file})`);
  }
  for (const n of src.notes) io.err(`note: ${n}`);
  const principal = client ? client.principal : opts.principal!;
  const answer = opts.topic !== undefined ? topicAnswer(src, principal, client, opts.topic, opts.subscribe ? 'subscribe' : 'publish') : permissionAnswer(src, principal, opts.permission!, opts.thing);
  const kind = client ? client.kind : principalKind(src, principal!);
  if (opts.json) {
    io.out(
      JSON.stringify(
        {
          snapshot: src.file,
          version: src.version,
          at: iso(src.now),
          ...(client ? { client } : {}),
          principal,
          kind,
          ...answer.json,
          decision: answer.decision.allow ? 'allow' : 'deny',
          reason: answer.decision.reason ?? null,
          steps: answer.steps,
        },
        null,
        2,
      ),
    );
    return answer.decision.allow ? 0 : 3;
  }
  if (client) printClient(client, io);
  const d = answer.decision;
  io.out(`${principal ?? '(anonymous)'} ${answer.what}: ${d.allow ? 'ALLOW' : `DENY ${d.reason}`}  (snapshot version ${src.version}, ${src.file}; at ${iso(src.now)}, ${src.nowSource})`);
  if (answer.routeText) io.out(`  route        ${answer.routeText}`);
  for (const s of answer.steps) io.out(`  ${s.passed ? 'ok  ' : 'FAIL'} ${s.rule.padEnd(13)} ${s.detail}`);
  if (!d.allow) io.out(`  ${d.reason}: ${DENY_REASONS[d.reason]}`);
  return d.allow ? 0 : 3;
}

function checkUsage(o: ExplainOptions): void {
  const usage = (msg: string) => new EwError('EW_USAGE', msg);
  if (o.clientId !== undefined && o.principal !== undefined) throw usage('give either -p PRINCIPAL or --client-id ID (the client\'s principal is explained)');
  if (o.clientId === undefined && o.principal === undefined) throw usage('give -p PRINCIPAL (or --client-id ID for a connected client)');
  if (o.topic !== undefined && o.permission !== undefined) throw usage('give either -P PERMISSION or --topic TOPIC, not both');
  if (o.clientId === undefined && o.topic === undefined && o.permission === undefined) throw usage('give -P PERMISSION [--thing T] or --topic TOPIC');
  if (o.topic !== undefined && o.thing !== undefined) throw usage('--thing goes with -P: with --topic, the topic names the thing');
  if (o.publish && o.subscribe) throw usage('give --publish or --subscribe, not both');
  if ((o.publish || o.subscribe) && o.topic === undefined) throw usage('--publish and --subscribe go with --topic');
}

interface Answer {
  readonly what: string;
  readonly routeText: string | null;
  readonly json: Record<string, unknown>;
  readonly decision: Decision;
  readonly steps: Trace;
}

function permissionAnswer(src: ExplainSource, principal: string | null, permission: string, thing: string | undefined): Answer {
  const on = thing ? ` on ${thing}` : '';
  const json = { permission, thing: thing ?? null };
  if (principal === null) {
    return { what: `${permission}${on}`, routeText: null, json, decision: DENY.UNKNOWN_PRINCIPAL, steps: [{ rule: 'principal', passed: false, detail: 'an anonymous client holds no permission' }] };
  }
  const { decision, steps } = explain(src.index, principal, permission, thing, src.now);
  return { what: `${permission}${on}`, routeText: null, json, decision, steps };
}

function topicAnswer(src: ExplainSource, principal: string | null, client: ClientInfo | undefined, topic: string, direction: Direction): Answer {
  const c = src.config;
  const map = compileTopicMap({ enabled: c.topics.thingMap });
  const rules = compileTopicRules(c.topics.rules);
  // A connected client is explained as its session holds it; a principal as a password login would make it.
  const who = client
    ? { subject: { principal: client.principal, kind: client.principal === null ? (-1 as const) : (kindNumber(client.kind) as PrincipalKind | -1), who: { anonymous: client.principal === null, principal: client.principal, role: client.role } } }
    : subjectOf(src.index, principal!);
  const e = explainTopic(map, rules, src.index, who, topic, direction, src.now);
  return {
    what: `${direction} ${topic}`,
    routeText: e.routeText,
    json: { topic, direction, route: e.route, permission: e.permission, thing: e.thing },
    decision: e.decision,
    steps: e.steps,
  };
}

function kindNumber(kind: string): number {
  const n = (PRINCIPAL_KIND_NAMES as readonly string[]).indexOf(kind);
  return n < 0 ? -1 : n;
}

function principalKind(src: ExplainSource, principal: string): string {
  const n = src.index.ids.get(principal);
  const p = n === undefined ? undefined : recordOf(src.index, n);
  return p ? PRINCIPAL_KIND_NAMES[p.kind] : 'unknown';
}

/** The client from the running agent; null (after saying why on stderr) when there is no agent or no such client. */
async function liveClient(opts: ExplainOptions, clientId: string, io: Io): Promise<{ client: ClientInfo; snapshotVersion: number | null } | null> {
  const config = agentConfig(opts);
  let res;
  try {
    res = await controlRequest(config.stateDir, { cmd: 'client', clientId }, 10_000);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') {
      io.err(`no agent is running with the state directory ${config.stateDir} (no control socket): --client-id asks the running agent`);
      return null;
    }
    if (code === 'EACCES') throw new EwError('EW_STORE_IO', 'permission denied on the control socket: run as the agent\'s user (edgewarden) or root', { where: config.stateDir, cause: err });
    throw err;
  }
  if (!res.ok) throw new EwError(res.code as ErrorCode, res.message);
  const client = res['client'] as ClientInfo | null | undefined;
  if (client === undefined) throw new EwError('EW_USAGE', 'the running agent does not know the request for a client (an older version?)', { where: config.stateDir });
  if (client === null) {
    io.err(`no client with the client id ${JSON.stringify(clientId)} is connected to the agent on ${config.stateDir} (edgewarden status counts the connected clients)`);
    return null;
  }
  return { client, snapshotVersion: (res['snapshotVersion'] as number | null | undefined) ?? null };
}

function printClient(c: ClientInfo, io: Io): void {
  const who = c.principal === null ? 'anonymous' : `${c.principal} (${c.kind}${c.role ? `, role ${c.role}` : ''})`;
  const lines: [string, string][] = [
    ['client', c.clientId],
    ['principal', who],
    ['credential', c.credential],
    ['remote', `${c.remote} on the ${c.listener} listener`],
    ['session', `${c.cleanSession ? 'clean' : 'persistent'}, keepalive ${c.keepaliveSeconds === 0 ? 'none' : `${c.keepaliveSeconds} s`}`],
    ['subscriptions', c.subscriptions.length === 0 ? 'none' : c.subscriptions.map((s) => `${s.filter} (QoS ${s.qos})`).join(', ')],
    ['connected', c.connectedSince],
  ];
  const w = Math.max(...lines.map(([k]) => k.length));
  for (const [k, v] of lines) io.out(`${k.padEnd(w)}  ${v}`);
}
