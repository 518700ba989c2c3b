// Topic rules for local applications, in the manner of mosquitto's acl_file (SPEC section 3):
// `{ pattern, who, access }`. They govern the topics OUTSIDE the thing topic map (the broker asks
// the map first) and every topic when the map is disabled (conformance mode). Pure; compiled once
// per configuration.
//
// Semantics:
// - who: 'anonymous' matches a client without credentials only; 'authenticated' any client with a
//   principal; 'principal:<id>' that principal; 'role:<name>' a principal whose role is <name>.
//   An anonymous client matches 'anonymous' rules and nothing else.
// - access: 'read' (subscribe and receive), 'write' (publish), 'readwrite' (both), 'deny' (both
//   refused). Deny rules win over allow rules; no matching allow rule = refused (deny by default).
// - canPublish(topic): some write rule's pattern matches the topic and no deny rule's does. Never
//   true for a `$` topic, a topic with `+`/`#`, or an invalid one (SPEC section 3).
// - canReceive(topic): some read rule matches the topic and no deny rule does. `$` topics only
//   through a pattern that starts with `$` itself ([MQTT-4.7.2-1]: `#` does not match `$SYS/x`).
// - canSubscribe(filter): granted when the filter can match at least ONE topic the client may
//   receive, i.e. some topic matches the filter and a read rule but no deny rule. Each delivered
//   message is then checked with canReceive. So with `#` readwrite and `test/nosubscribe` deny,
//   subscribing to `test/nosubscribe` is refused (everything it can match is denied), while `#` and
//   `test/+` are granted and a message on `test/nosubscribe` is not delivered to them. A filter
//   that only partly overlaps a deny rule is granted; one that overlaps no read rule is refused.
import { ID_PATTERN } from '../policy/ids.js';
import { filterLevels, isValidTopicFilter, isValidTopicName, matchesValid, someTopicMatchesLevels } from './filters.js';

export type TopicAccess = 'read' | 'write' | 'readwrite' | 'deny';

/** One rule as the configuration holds it (`topics.rules[]`). */
export interface TopicRule {
  /** An MQTT topic filter (`+` and `#` as in a subscription). */
  readonly pattern: string;
  /** 'anonymous' | 'authenticated' | 'principal:<id>' | 'role:<name>' */
  readonly who: string;
  readonly access: TopicAccess;
}

/** The client a rule is checked for. */
export interface RuleSubject {
  /** Connected without credentials. */
  readonly anonymous: boolean;
  /** Its principal id; null when anonymous. */
  readonly principal: string | null;
  /** Its principal's role (users have exactly one); null when it has none. */
  readonly role: string | null;
}

export interface TopicRules {
  /** Whether the client may publish to the topic name. */
  canPublish(topic: string, who: RuleSubject): boolean;
  /** Whether the client may subscribe to the filter: it can match a topic the client may receive. */
  canSubscribe(filter: string, who: RuleSubject): boolean;
  /** Whether a message on the topic name may be delivered to the client. */
  canReceive(topic: string, who: RuleSubject): boolean;
  /** Whether some allow rule is for 'anonymous': anonymous clients may connect. */
  readonly allowsAnonymous: boolean;
  /** The number of rules. */
  readonly size: number;
}

const ACCESS: readonly TopicAccess[] = ['read', 'write', 'readwrite', 'deny'];
const ID = new RegExp(ID_PATTERN);

/** The problems with a rule list, each naming its place (`[2].who`); empty when it is fine. */
export function checkTopicRules(rules: readonly TopicRule[]): { path: string; message: string }[] {
  const issues: { path: string; message: string }[] = [];
  if (!Array.isArray(rules)) return [{ path: '', message: 'must be a list of rules' }];
  rules.forEach((r: TopicRule, i) => {
    if (typeof r !== 'object' || r === null) return issues.push({ path: `[${i}]`, message: 'must be an object with pattern, who and access' });
    if (typeof r.pattern !== 'string' || !isValidTopicFilter(r.pattern)) {
      issues.push({ path: `[${i}].pattern`, message: `${JSON.stringify(r.pattern)} is not a valid MQTT topic filter (+ and # only as whole levels, # only as the last level)` });
    }
    if (typeof r.who !== 'string' || parseWho(r.who) === null) {
      issues.push({ path: `[${i}].who`, message: `${JSON.stringify(r.who)} must be anonymous, authenticated, principal:<id> or role:<name>` });
    }
    if (!ACCESS.includes(r.access)) issues.push({ path: `[${i}].access`, message: `${JSON.stringify(r.access)} must be one of ${ACCESS.join(', ')}` });
    return undefined;
  });
  return issues;
}

type Who = { kind: 'anonymous' } | { kind: 'authenticated' } | { kind: 'principal'; id: string } | { kind: 'role'; name: string };

function parseWho(who: string): Who | null {
  if (who === 'anonymous' || who === 'authenticated') return { kind: who };
  const colon = who.indexOf(':');
  const head = who.slice(0, colon);
  const id = who.slice(colon + 1);
  if (colon < 0 || !ID.test(id)) return null;
  if (head === 'principal') return { kind: 'principal', id };
  if (head === 'role') return { kind: 'role', name: id };
  return null;
}

/** The rules of one `who`, by what they allow. Patterns are valid filters. */
interface Group {
  readonly read: string[];
  readonly write: string[];
  readonly deny: string[];
  /** `read` and `deny` split into levels, for canSubscribe. */
  readonly readLevels: string[][];
  readonly denyLevels: string[][];
}

const newGroup = (): Group => ({ read: [], write: [], deny: [], readLevels: [], denyLevels: [] });
const EMPTY: Group = newGroup();

function anyMatches(patterns: readonly string[], topic: string): boolean {
  for (const p of patterns) if (matchesValid(p, topic)) return true;
  return false;
}

/** Compiles the rules. Throws a TypeError naming the rule when one is invalid (checkTopicRules says why). */
export function compileTopicRules(rules: readonly TopicRule[] = []): TopicRules {
  const issues = checkTopicRules(rules);
  if (issues.length > 0) throw new TypeError(`topic rules: ${issues.map((i) => `rules${i.path}: ${i.message}`).join('; ')}`);

  const anonymous = newGroup();
  const authenticated = newGroup();
  const byPrincipal = new Map<string, Group>();
  const byRole = new Map<string, Group>();
  let allowsAnonymous = false;
  for (const rule of rules) {
    const who = parseWho(rule.who)!;
    let g: Group;
    if (who.kind === 'anonymous') g = anonymous;
    else if (who.kind === 'authenticated') g = authenticated;
    else {
      const map = who.kind === 'principal' ? byPrincipal : byRole;
      const key = who.kind === 'principal' ? who.id : who.name;
      g = map.get(key) ?? newGroup();
      map.set(key, g);
    }
    if (rule.access === 'deny') {
      g.deny.push(rule.pattern);
      g.denyLevels.push(filterLevels(rule.pattern));
    } else {
      if (rule.access !== 'write') {
        g.read.push(rule.pattern);
        g.readLevels.push(filterLevels(rule.pattern));
      }
      if (rule.access !== 'read') g.write.push(rule.pattern);
      if (who.kind === 'anonymous') allowsAnonymous = true;
    }
  }

  /** The groups that apply to a client: anonymous alone, or authenticated + its principal + its role. */
  const groupsOf = (who: RuleSubject): readonly Group[] => {
    if (who.anonymous) return [anonymous];
    const p = who.principal === null ? EMPTY : (byPrincipal.get(who.principal) ?? EMPTY);
    const r = who.role === null ? EMPTY : (byRole.get(who.role) ?? EMPTY);
    return [authenticated, p, r];
  };

  const allowedAndNotDenied = (topic: string, who: RuleSubject, kind: 'read' | 'write'): boolean => {
    const groups = groupsOf(who);
    let allowed = false;
    for (const g of groups) {
      if (anyMatches(g.deny, topic)) return false;
      if (!allowed && anyMatches(g[kind], topic)) allowed = true;
    }
    return allowed;
  };

  return Object.freeze({
    allowsAnonymous,
    size: rules.length,
    canPublish(topic: string, who: RuleSubject): boolean {
      if (!isValidTopicName(topic) || topic.charCodeAt(0) === 0x24 /* $ */) return false;
      return allowedAndNotDenied(topic, who, 'write');
    },
    canReceive(topic: string, who: RuleSubject): boolean {
      if (!isValidTopicName(topic)) return false;
      return allowedAndNotDenied(topic, who, 'read');
    },
    canSubscribe(filter: string, who: RuleSubject): boolean {
      if (!isValidTopicFilter(filter)) return false;
      const groups = groupsOf(who);
      const deny = groups.length === 1 ? groups[0]!.denyLevels : groups.flatMap((g) => g.denyLevels);
      const f = filterLevels(filter);
      for (const g of groups) {
        for (const read of g.readLevels) if (someTopicMatchesLevels([f, read], deny)) return true;
      }
      return false;
    },
  });
}
