// The thing topic map (SPEC section 3): what an MQTT topic means to the decision engine.
// Pure: strings in, frozen route objects out. The broker calls it from aedes' hooks and caches
// one result per topic string (per filter for subscriptions).
//
// The map is data: THING_TOPICS below lists every topic under `{root}/{thing}/` as an MQTT filter
// of the levels after the thing (`+` = one level: a {name} or {id}; `+/#` = one or more levels),
// with what PUBLISHING it needs and to whom a message on it is DELIVERED; `{bulkRoot}/+` is the
// bulk request. routePublish and routeDelivery look a topic up in this table (first entry that
// matches), routeSubscription intersects a filter with every entry, so the three can not disagree.
//
// Semantic choices (see also the header of ./index.ts):
// - Placeholders are MQTT `+`: any single level, an empty one included. `things//commands/x` is
//   in the map with thing '' (no such thing exists, so `decide` denies it UNKNOWN_THING): the map
//   never hands a topic under its roots to the topic rules because of an odd thing id.
// - `telemetry/...` and `alerts/...` need at least one level after `telemetry`/`alerts`:
//   `things/t/telemetry` itself is outside the map (for publish AND delivery).
// - The fan-out topic `things/{t}/bulk/{operation}` is AGENT-ONLY for publishing (only the broker's
//   own fan-out publishes it; a client publishing it directly would bypass EXECUTE_BULK_UPDATE), and
//   its delivery is the inbox of t.
// - The bulk request `bulk/{operation}` itself is delivered to NOBODY (kind 'nobody'): the broker
//   fans it out per thing instead; no client reads bulk requests.
// - Every topic whose delivery is in the map has a publish route in the map and vice versa, so a
//   topic rule can never open a map topic: rules apply exactly to the 'outside' topics.
// - A topic or filter starting with `$`, and a publish topic with `+`/`#`, is outside the map.
// - Disabled map (conformance mode): every valid topic and filter is outside.
import { permissionId } from '../catalog/index.js';
import { filterLevels, isValidTopicFilter, isValidTopicName, someTopicMatchesLevels } from './filters.js';

/** The permissions a thing topic's publish needs. */
export type ThingActionPermission =
  | 'EXECUTE_THING_COMMAND'
  | 'SET_THING_PARAMETER'
  | 'UPDATE_FIRMWARE'
  | 'WRITE_METRIC_VALUE'
  | 'WRITE_ALERT_STATUS'
  | 'CLEAR_ALERT'
  | 'WRITE_THING_OPTION'
  | 'WRITE_THING_ACTIVATION'
  | 'REGISTER_THING';
/** The permissions receiving a thing topic needs. */
export type ReadPermission = 'READ_THING' | 'READ_CLOUD_STATUS';

export type PublishRoute =
  /** Needs `permission` on `thing`. `name` is the {name}/{id} level (command, parameter, metric, option, alert), else null. */
  | { readonly kind: 'action'; readonly permission: ThingActionPermission; readonly permissionId: number; readonly thing: string; readonly name: string | null }
  /** Needs EXECUTE_BULK_UPDATE; the broker fans it out to fanOutTopic(t, operation) per thing in scope. */
  | { readonly kind: 'bulk'; readonly permission: 'EXECUTE_BULK_UPDATE'; readonly permissionId: number; readonly operation: string }
  /** Only the device `thing` itself may publish it (telemetry, events, command replies). */
  | { readonly kind: 'device-own'; readonly thing: string }
  /** Only the agent publishes it (cloud status, bulk fan-out); every client publish is refused. */
  | { readonly kind: 'agent-only'; readonly thing: string }
  /** Not a map topic: topic rules decide (invalid, `$`, wildcard and unknown topics; everything when disabled). */
  | { readonly kind: 'outside' };

/**
 * The action a message on a topic is (SPEC section 3, "an action never outlives its authority"):
 * publishing it needed `permission` on the route's thing, and each delivery of it is decided again
 * for its sender. Commands, parameter/metric/option writes, firmware, alert ack/clear, activation,
 * registration, and a bulk update's fan-out (EXECUTE_BULK_UPDATE on that thing).
 */
export interface ActionRef {
  readonly permission: ThingActionPermission | 'EXECUTE_BULK_UPDATE';
  readonly permissionId: number;
}

export type DeliveryRoute =
  /** Delivered to subscribers holding `permission` on `thing`, and to the device `thing` itself when `ownerMayReceive`. */
  | { readonly kind: 'read'; readonly permission: ReadPermission; readonly permissionId: number; readonly thing: string; readonly ownerMayReceive: boolean; readonly action: ActionRef | null }
  /** Delivered only to the device `thing` itself (commands, parameter sets, firmware, ..., bulk fan-out). */
  | { readonly kind: 'inbox'; readonly thing: string; readonly action: ActionRef | null }
  /** In the map but delivered to no client (a bulk request: the broker delivers its fan-out instead). */
  | { readonly kind: 'nobody' }
  /** Not a map topic: topic rules decide. */
  | { readonly kind: 'outside' };

export interface SubscriptionRead {
  readonly permission: ReadPermission;
  readonly permissionId: number;
  /** The filter's {thing} level when it is a literal; null when it is a wildcard (any thing). */
  readonly thing: string | null;
  /** The device `thing` may receive these topics of its own without the permission. */
  readonly ownerMayReceive: boolean;
}

/** Which map topics a filter can match. Nothing at all (all empty, outside false): refuse it. */
export interface SubscriptionRoute {
  /** The read kinds it can match, at most one entry per permission (READ_THING first). */
  readonly reads: readonly SubscriptionRead[];
  /** Whether it can match inbox topics (at most one entry); thing null = any thing's inbox. */
  readonly inbox: readonly { readonly thing: string | null }[];
  /** Whether it can match a topic outside the map (where topic rules decide). */
  readonly outside: boolean;
}

export interface TopicMapOptions {
  /** false: every topic is outside the map, only topic rules apply (conformance mode). Default true. */
  readonly enabled?: boolean;
  /** The thing topics' root, one or more levels. Default 'things'. */
  readonly root?: string;
  /** The bulk requests' root, one or more levels. Default 'bulk'. */
  readonly bulkRoot?: string;
}

export interface TopicMap {
  readonly enabled: boolean;
  readonly root: string;
  readonly bulkRoot: string;
  /** What publishing the topic needs. */
  routePublish(topic: string): PublishRoute;
  /** To whom a message on the (concrete) topic may be delivered. */
  routeDelivery(topic: string): DeliveryRoute;
  /** Which kinds of map topics the filter can match; an invalid filter matches nothing. */
  routeSubscription(filter: string): SubscriptionRoute;
  /** The topic a bulk request is fanned out on for one thing: `{root}/{thing}/bulk/{operation}`. */
  fanOutTopic(thing: string, operation: string): string;
  /** Every map topic as an MQTT filter, in lookup order (for docs and `explain`). */
  readonly filters: readonly string[];
}

// ---------------------------------------------------------------------------
// the map as data

type PublishSpec =
  | { kind: 'action'; permission: ThingActionPermission }
  | { kind: 'device-own' }
  | { kind: 'agent-only' };
type DeliverySpec = { kind: 'read'; permission: ReadPermission; ownerMayReceive: boolean } | { kind: 'inbox' };

export interface ThingTopic {
  /** The levels after `{root}/{thing}/`, as an MQTT filter. */
  readonly suffix: string;
  readonly publish: PublishSpec;
  readonly delivery: DeliverySpec;
}

const action = (permission: ThingActionPermission): PublishSpec => ({ kind: 'action', permission });
const READ_THING: DeliverySpec = { kind: 'read', permission: 'READ_THING', ownerMayReceive: true };
const INBOX: DeliverySpec = { kind: 'inbox' };

/** The thing topics, in lookup order (the first entry that matches a topic wins). */
export const THING_TOPICS: readonly ThingTopic[] = [
  { suffix: 'commands/+', publish: action('EXECUTE_THING_COMMAND'), delivery: INBOX },
  { suffix: 'commands/+/reply', publish: { kind: 'device-own' }, delivery: READ_THING },
  { suffix: 'parameters/+/set', publish: action('SET_THING_PARAMETER'), delivery: INBOX },
  { suffix: 'firmware/update', publish: action('UPDATE_FIRMWARE'), delivery: INBOX },
  { suffix: 'metrics/+/set', publish: action('WRITE_METRIC_VALUE'), delivery: INBOX },
  { suffix: 'alerts/+/ack', publish: action('WRITE_ALERT_STATUS'), delivery: READ_THING },
  { suffix: 'alerts/+/clear', publish: action('CLEAR_ALERT'), delivery: READ_THING },
  { suffix: 'alerts/+/#', publish: { kind: 'device-own' }, delivery: READ_THING },
  { suffix: 'options/+/set', publish: action('WRITE_THING_OPTION'), delivery: INBOX },
  { suffix: 'activate', publish: action('WRITE_THING_ACTIVATION'), delivery: INBOX },
  { suffix: 'register', publish: action('REGISTER_THING'), delivery: INBOX },
  { suffix: 'telemetry/+/#', publish: { kind: 'device-own' }, delivery: READ_THING },
  { suffix: 'cloud-status', publish: { kind: 'agent-only' }, delivery: { kind: 'read', permission: 'READ_CLOUD_STATUS', ownerMayReceive: false } },
  { suffix: 'bulk/+', publish: { kind: 'agent-only' }, delivery: INBOX },
].map((e) => Object.freeze(e as ThingTopic));

/** The level of the fan-out topic after the thing: `{root}/{thing}/bulk/{operation}`. */
const FAN_OUT_LEVEL = 'bulk';

function knownPermissionId(name: string): number {
  const id = permissionId(name);
  if (id < 0) throw new Error(`topic map: ${name} is not in the permission catalog`);
  return id;
}

const PID = {
  EXECUTE_BULK_UPDATE: knownPermissionId('EXECUTE_BULK_UPDATE'),
  READ_THING: knownPermissionId('READ_THING'),
  READ_CLOUD_STATUS: knownPermissionId('READ_CLOUD_STATUS'),
} as const;

// ---------------------------------------------------------------------------
// options

/** Why `root` can not be a topic map root, or null: one or more non-empty levels, no wildcards, no `$`. */
export function topicRootProblem(root: string): string | null {
  if (typeof root !== 'string' || root === '') return 'must be a non-empty string';
  if (!isValidTopicName(root)) return 'must be a valid MQTT topic name (no + or #)';
  if (root.startsWith('$')) return 'must not start with $';
  if (root.split('/').includes('')) return 'must not have empty levels (leading, trailing or double /)';
  return null;
}

/** The problems with topic map options, each naming its key; empty when they are fine. */
export function checkTopicMapOptions(opts: TopicMapOptions = {}): { path: string; message: string }[] {
  const issues: { path: string; message: string }[] = [];
  const root = opts.root ?? 'things';
  const bulkRoot = opts.bulkRoot ?? 'bulk';
  const rootProblem = topicRootProblem(root);
  const bulkProblem = topicRootProblem(bulkRoot);
  if (rootProblem) issues.push({ path: 'root', message: `${JSON.stringify(root)} ${rootProblem}` });
  if (bulkProblem) issues.push({ path: 'bulkRoot', message: `${JSON.stringify(bulkRoot)} ${bulkProblem}` });
  if (!rootProblem && !bulkProblem) {
    const a = root.split('/');
    const b = bulkRoot.split('/');
    const n = Math.min(a.length, b.length);
    if (a.slice(0, n).join('/') === b.slice(0, n).join('/')) {
      issues.push({ path: 'bulkRoot', message: `${JSON.stringify(bulkRoot)} and root ${JSON.stringify(root)} overlap: neither may equal or contain the other` });
    }
  }
  return issues;
}

// ---------------------------------------------------------------------------
// compiling

interface CompiledThingTopic {
  readonly entry: ThingTopic;
  /** The suffix's levels. */
  readonly levels: readonly string[];
  /** The whole filter's levels: root, `+`, suffix. */
  readonly filter: readonly string[];
  /** The catalog id of the permission its publish or delivery needs, else -1. */
  readonly publishPid: number;
  readonly deliveryPid: number;
  /** Index in the suffix of its {name}/{id} level (the first `+`), else -1. */
  readonly nameAt: number;
}

const OUTSIDE = Object.freeze({ kind: 'outside' as const });
const NOBODY = Object.freeze({ kind: 'nobody' as const });
const NO_READS: readonly SubscriptionRead[] = Object.freeze([]);
const NO_INBOX: readonly { readonly thing: string | null }[] = Object.freeze([]);
const MATCHES_NOTHING: SubscriptionRoute = Object.freeze({ reads: NO_READS, inbox: NO_INBOX, outside: false });
const ONLY_OUTSIDE: SubscriptionRoute = Object.freeze({ reads: NO_READS, inbox: NO_INBOX, outside: true });

/** Whether the suffix levels match `levels` from `offset` to the end (`+` one level, `#` the rest). */
function suffixMatches(suffix: readonly string[], levels: readonly string[], offset: number): boolean {
  for (let i = 0; i < suffix.length; i++) {
    const p = suffix[i]!;
    if (p === '#') return true;
    const v = levels[offset + i];
    if (v === undefined) return false;
    if (p !== '+' && p !== v) return false;
  }
  return offset + suffix.length === levels.length;
}

function startsWithLevels(levels: readonly string[], prefix: readonly string[]): boolean {
  if (levels.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (levels[i] !== prefix[i]) return false;
  return true;
}

/**
 * `{root}/{thing}/bulk/{operation}`: the topic the broker publishes one thing's share of a bulk
 * request on. Never throws: `thing` and `operation` must be single levels (no `/`, `+`, `#`), which
 * snapshot thing ids and the {operation} level of a bulk topic always are; for anything else the
 * result is not a fan-out topic (routeDelivery does not call it an inbox of `thing`).
 */
export function fanOutTopic(thing: string, operation: string, root = 'things'): string {
  return `${root}/${thing}/${FAN_OUT_LEVEL}/${operation}`;
}

/**
 * Compiles the topic map. Throws a TypeError when the options are invalid (checkTopicMapOptions
 * says why; the configuration loader checks them first).
 */
export function compileTopicMap(opts: TopicMapOptions = {}): TopicMap {
  const issues = checkTopicMapOptions(opts);
  if (issues.length > 0) throw new TypeError(`topic map: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`);
  const enabled = opts.enabled ?? true;
  const root = opts.root ?? 'things';
  const bulkRoot = opts.bulkRoot ?? 'bulk';
  const rootLevels = root.split('/');
  const bulkLevels = bulkRoot.split('/');
  const thingAt = rootLevels.length; // index of the {thing} level

  const compiled: CompiledThingTopic[] = THING_TOPICS.map((entry) => {
    const levels = filterLevels(entry.suffix);
    return {
      entry,
      levels,
      filter: [...rootLevels, '+', ...levels],
      publishPid: entry.publish.kind === 'action' ? knownPermissionId(entry.publish.permission) : -1,
      deliveryPid: entry.delivery.kind === 'read' ? knownPermissionId(entry.delivery.permission) : -1,
      nameAt: levels.indexOf('+'),
    };
  });
  // Entries by their first suffix level: a topic is compared with only the few that can match.
  const byFirstLevel = new Map<string, CompiledThingTopic[]>();
  for (const c of compiled) {
    const first = c.levels[0]!;
    if (first === '+' || first === '#') throw new Error(`topic map: ${c.entry.suffix} must start with a literal level`); // a defect of THING_TOPICS
    const list = byFirstLevel.get(first) ?? [];
    list.push(c);
    byFirstLevel.set(first, list);
  }
  const bulkFilter = [...bulkLevels, '+'];
  const allFilters: readonly (readonly string[])[] = [...compiled.map((c) => c.filter), bulkFilter];

  type Found = { kind: 'thing'; c: CompiledThingTopic; levels: string[]; thing: string } | { kind: 'bulk'; operation: string } | null;

  const find = (topic: string): Found => {
    if (!enabled || !isValidTopicName(topic) || topic.charCodeAt(0) === 0x24 /* $ */) return null;
    const levels = topic.split('/');
    if (startsWithLevels(levels, rootLevels)) {
      const thing = levels[thingAt];
      const first = levels[thingAt + 1];
      if (thing === undefined || first === undefined) return null;
      for (const c of byFirstLevel.get(first) ?? []) {
        if (suffixMatches(c.levels, levels, thingAt + 1)) return { kind: 'thing', c, levels, thing };
      }
      return null;
    }
    if (levels.length === bulkLevels.length + 1 && startsWithLevels(levels, bulkLevels)) {
      return { kind: 'bulk', operation: levels[bulkLevels.length]! };
    }
    return null;
  };

  const routePublish = (topic: string): PublishRoute => {
    const f = find(topic);
    if (f === null) return OUTSIDE;
    if (f.kind === 'bulk') {
      return Object.freeze({ kind: 'bulk', permission: 'EXECUTE_BULK_UPDATE', permissionId: PID.EXECUTE_BULK_UPDATE, operation: f.operation });
    }
    const p = f.c.entry.publish;
    if (p.kind === 'action') {
      const name = f.c.nameAt < 0 ? null : f.levels[thingAt + 1 + f.c.nameAt]!;
      return Object.freeze({ kind: 'action', permission: p.permission, permissionId: f.c.publishPid, thing: f.thing, name });
    }
    return Object.freeze({ kind: p.kind, thing: f.thing });
  };

  // The action each entry's messages are: its publish permission, or EXECUTE_BULK_UPDATE for the fan-out.
  const actions = new Map<CompiledThingTopic, ActionRef | null>();
  for (const c of compiled) {
    const p = c.entry.publish;
    actions.set(
      c,
      p.kind === 'action'
        ? Object.freeze({ permission: p.permission, permissionId: c.publishPid })
        : c.entry.suffix === `${FAN_OUT_LEVEL}/+`
          ? Object.freeze({ permission: 'EXECUTE_BULK_UPDATE' as const, permissionId: PID.EXECUTE_BULK_UPDATE })
          : null,
    );
  }

  const routeDelivery = (topic: string): DeliveryRoute => {
    const f = find(topic);
    if (f === null) return OUTSIDE;
    if (f.kind === 'bulk') return NOBODY;
    const d = f.c.entry.delivery;
    const action = actions.get(f.c) ?? null;
    if (d.kind === 'inbox') return Object.freeze({ kind: 'inbox', thing: f.thing, action });
    return Object.freeze({ kind: 'read', permission: d.permission, permissionId: f.c.deliveryPid, thing: f.thing, ownerMayReceive: d.ownerMayReceive, action });
  };

  const routeSubscription = (filter: string): SubscriptionRoute => {
    if (!isValidTopicFilter(filter)) return MATCHES_NOTHING;
    if (!enabled) return ONLY_OUTSIDE;
    const fl = filterLevels(filter);
    // The filter's {thing} level: a literal, or null when it (or a level before it) is a wildcard.
    let thing: string | null = null;
    for (let i = 0; i <= thingAt && i < fl.length; i++) {
      if (fl[i] === '#') break;
      if (i === thingAt && fl[i] !== '+') thing = fl[i]!;
    }
    let readThing: SubscriptionRead | undefined;
    let readCloud: SubscriptionRead | undefined;
    let inbox = false;
    for (const c of compiled) {
      const d = c.entry.delivery;
      if (d.kind === 'inbox' ? inbox : d.permission === 'READ_THING' ? readThing : readCloud) continue; // known already
      if (!someTopicMatchesLevels([fl, c.filter])) continue;
      if (d.kind === 'inbox') inbox = true;
      else {
        const r = Object.freeze({ permission: d.permission, permissionId: PID[d.permission], thing, ownerMayReceive: d.ownerMayReceive });
        if (d.permission === 'READ_THING') readThing = r;
        else readCloud = r;
      }
    }
    const reads = [readThing, readCloud].filter((r): r is SubscriptionRead => r !== undefined);
    return Object.freeze({
      reads: reads.length === 0 ? NO_READS : Object.freeze(reads),
      inbox: inbox ? Object.freeze([Object.freeze({ thing })]) : NO_INBOX,
      outside: someTopicMatchesLevels([fl], allFilters),
    });
  };

  return Object.freeze({
    enabled,
    root,
    bulkRoot,
    routePublish,
    routeDelivery,
    routeSubscription,
    fanOutTopic: (thing: string, operation: string) => fanOutTopic(thing, operation, root),
    filters: Object.freeze(allFilters.map((l) => l.join('/'))),
  });
}
