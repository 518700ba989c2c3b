// MQTT topic names and topic filters (MQTT 3.1.1 section 4.7, the same in 5.0): validity, matching,
// and set relations between filters (covered by, intersects, covered by a union). Pure.
//
// Vocabulary: a topic NAME is what a PUBLISH carries (no wildcards); a topic FILTER is what a
// SUBSCRIBE carries (or a topic rule's pattern) and may hold `+` (one level) and `#` (the rest).
// Levels are separated by `/`; empty levels are levels (`a//b` has three, `/` has two).
//
// Rules applied everywhere here:
// - [MQTT-4.7.1-1] names have no wildcards; [MQTT-4.7.1-2] `#` is a whole level and the last one;
//   [MQTT-4.7.1-3] `+` is a whole level; [MQTT-4.7.3-1] names and filters are at least one
//   character; [MQTT-4.7.3-2] no U+0000; [MQTT-4.7.3-3] at most 65535 bytes of UTF-8;
//   [MQTT-1.5.3-1] no lone UTF-16 surrogates (they have no UTF-8 encoding).
// - `a/#` also matches `a` (the parent level), and `#` matches every name not starting with `$`.
// - [MQTT-4.7.2-1] a filter whose first character is a wildcard (`+` or `#`) matches no name that
//   starts with `$` (`$SYS/...`); `$SYS/#` does.
// - The set relations (filterCoveredBy, filtersIntersect, someTopicMatches) range over the VALID
//   topic names only, and honour [MQTT-4.7.2-1].
// Invalid input is never an error here: a function given an invalid name or filter answers false.

const SLASH = 0x2f; // '/'
const PLUS = 0x2b; // '+'
const HASH = 0x23; // '#'
const DOLLAR = 0x24; // '$'
const MAX_BYTES = 65535;

function utf8Length(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** The shared checks of names and filters: length, U+0000, lone surrogates, size in UTF-8. */
function isWellFormed(s: string, wildcards: boolean): boolean {
  const n = s.length;
  if (n === 0 || n > MAX_BYTES) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === 0) return false;
    if (c === PLUS) {
      if (!wildcards) return false;
      // [MQTT-4.7.1-3] a whole level
      if ((i > 0 && s.charCodeAt(i - 1) !== SLASH) || (i + 1 < n && s.charCodeAt(i + 1) !== SLASH)) return false;
    } else if (c === HASH) {
      if (!wildcards) return false;
      // [MQTT-4.7.1-2] a whole level, and the last one
      if ((i > 0 && s.charCodeAt(i - 1) !== SLASH) || i + 1 !== n) return false;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      // a high surrogate followed by a low one is one character; anything else cannot be UTF-8
      if (c > 0xdbff || i + 1 === n) return false;
      const d = s.charCodeAt(i + 1);
      if (d < 0xdc00 || d > 0xdfff) return false;
      i++;
    }
  }
  // Each UTF-16 unit is at most 3 bytes of UTF-8: count only when it could matter.
  return n * 3 <= MAX_BYTES || utf8Length(s) <= MAX_BYTES;
}

/** A topic name as a PUBLISH may carry it: not empty, no `+`/`#`, no U+0000, at most 65535 bytes. */
export function isValidTopicName(topic: string): boolean {
  return typeof topic === 'string' && isWellFormed(topic, false);
}

/** A topic filter: not empty, `+` and `#` only as whole levels, `#` only last, no U+0000, at most 65535 bytes. */
export function isValidTopicFilter(filter: string): boolean {
  return typeof filter === 'string' && isWellFormed(filter, true);
}

/** True for a name or filter whose first character is `$` (`$SYS/...`, `$share/...`). */
export function isDollarTopic(topic: string): boolean {
  return topic.charCodeAt(0) === DOLLAR;
}

/**
 * Whether the topic name matches the filter, with MQTT semantics: `+` one level (an empty one too),
 * `#` the rest including the parent (`sport/#` matches `sport`), [MQTT-4.7.2-1] for `$` names.
 * False when either is invalid.
 */
export function topicMatches(filter: string, topic: string): boolean {
  return isValidTopicFilter(filter) && isValidTopicName(topic) && matchesValid(filter, topic);
}

/**
 * topicMatches for inputs already known to be valid (a compiled pattern, a name from a packet the
 * broker has checked). Scans both strings in place; allocates nothing.
 */
export function matchesValid(filter: string, topic: string): boolean {
  const f0 = filter.charCodeAt(0);
  if (topic.charCodeAt(0) === DOLLAR && (f0 === PLUS || f0 === HASH)) return false; // [MQTT-4.7.2-1]
  const fl = filter.length;
  const tl = topic.length;
  let fi = 0; // start of the current filter level
  let ti = 0; // start of the current topic level; tl + 1 once the name has no level left
  for (;;) {
    let fe = filter.indexOf('/', fi);
    if (fe < 0) fe = fl;
    const len = fe - fi;
    if (len === 1 && filter.charCodeAt(fi) === HASH) return true; // the rest, or nothing (parent)
    if (ti > tl) return false; // the filter wants a level the name does not have
    let te = topic.indexOf('/', ti);
    if (te < 0) te = tl;
    if (len !== 1 || filter.charCodeAt(fi) !== PLUS) {
      if (te - ti !== len) return false;
      for (let i = 0; i < len; i++) if (filter.charCodeAt(fi + i) !== topic.charCodeAt(ti + i)) return false;
    }
    if (fe === fl) return te === tl;
    fi = fe + 1;
    ti = te + 1;
  }
}

// ---------------------------------------------------------------------------
// Set relations. Each filter is taken as the set of valid names it matches. One search answers
// all of them: "is there a name that matches every filter of `must` and none of `mustNot`?" It
// builds such a name level by level, and at each level the choice is forced:
// - when a filter of `must` names a literal there, the level must be that literal;
// - otherwise (all of `must` have `+` or `#` there) a FRESH string no filter names (non-empty,
//   not starting with `$`) is at least as good as any literal: every filter of `must` takes it,
//   and it keeps alive only the filters of `mustNot` with a wildcard there, a subset of those any
//   literal would keep alive. Fewer `mustNot` filters never lose a witness.
// So the search is one path; the only choice at each level is to end the name there. It ends
// because each level follows a finite filter of `must` or, once all of `must` sit on `#`,
// shortens `mustNot` (its filters die when the name outgrows them; one on `#` means "no").

type Levels = readonly string[];

function someName(must: readonly Levels[], mustNot: readonly Levels[]): boolean {
  const mk = must.map(() => 0); // next level of must[i] to match
  const nk = mustNot.map(() => 0); // same for mustNot[j]; -1 once it no longer matches
  let depth = 0; // levels of the name built so far
  let firstEmpty = false; // the name so far is the single level '' (not a valid name)
  for (;;) {
    if (depth > 0) {
      // A mustNot filter sitting on `#` matches every continuation: no witness from here.
      for (let j = 0; j < mustNot.length; j++) if (nk[j]! >= 0 && mustNot[j]![nk[j]!] === '#') return false;
      // End the name here?
      let canEnd = !(depth === 1 && firstEmpty);
      for (let i = 0; canEnd && i < must.length; i++) {
        const k = mk[i]!;
        if (k !== must[i]!.length && must[i]![k] !== '#') canEnd = false;
      }
      for (let j = 0; canEnd && j < mustNot.length; j++) if (nk[j] === mustNot[j]!.length) canEnd = false;
      if (canEnd) return true;
    }
    // Add one level: every filter of `must` needs one.
    let required: string | null = null;
    for (let i = 0; i < must.length; i++) {
      const lv = must[i]![mk[i]!];
      if (lv === undefined) return false; // must[i] has ended: the name may not grow
      if (lv !== '+' && lv !== '#') {
        if (required !== null && required !== lv) return false;
        required = lv;
      }
    }
    // [MQTT-4.7.2-1]: a wildcard first level does not take a `$` level (a fresh level is never `$`).
    const dollar = depth === 0 && required !== null && required.charCodeAt(0) === DOLLAR;
    for (let i = 0; i < must.length; i++) {
      const lv = must[i]![mk[i]!]!;
      if (lv === '#' || lv === '+') {
        if (dollar) return false;
        if (lv === '+') mk[i]!++; // `#` stays and takes the rest
      } else mk[i]!++; // the literal: it equals `required`
    }
    for (let j = 0; j < mustNot.length; j++) {
      const k = nk[j]!;
      const lv = k >= 0 ? mustNot[j]![k] : undefined;
      if (lv === undefined) nk[j] = -1;
      else if (lv === '#' || lv === '+') nk[j] = dollar ? -1 : lv === '+' ? k + 1 : k;
      else nk[j] = lv === required ? k + 1 : -1; // a fresh level (required null) equals no literal
    }
    firstEmpty = depth === 0 && required === '';
    depth++;
  }
}

/** A valid filter's levels. */
export function filterLevels(filter: string): string[] {
  return filter.split('/');
}

/**
 * Whether some valid topic name matches every filter of `filters` and none of `except`.
 * False when any filter is invalid. With `filters` empty: whether some name escapes `except`.
 */
export function someTopicMatches(filters: readonly string[], except: readonly string[] = []): boolean {
  for (const f of filters) if (!isValidTopicFilter(f)) return false;
  for (const f of except) if (!isValidTopicFilter(f)) return false;
  return someName(filters.map(filterLevels), except.map(filterLevels));
}

/** someTopicMatches on filters already split into levels and known to be valid. */
export function someTopicMatchesLevels(filters: readonly Levels[], except: readonly Levels[] = []): boolean {
  return someName(filters, except);
}

/**
 * Whether every topic name matching `filter` also matches `pattern` (`a/+` is covered by `a/#`,
 * `#` by `+/#`; `a/#` is not covered by `a/+`, nor `$SYS/#` by `#`). False when either is invalid.
 */
export function filterCoveredBy(filter: string, pattern: string): boolean {
  return isValidTopicFilter(filter) && isValidTopicFilter(pattern) && !someName([filterLevels(filter)], [filterLevels(pattern)]);
}

/** Whether every topic name matching `filter` matches at least one of `patterns` (covered by their union). */
export function filterCoveredByAny(filter: string, patterns: readonly string[]): boolean {
  if (!isValidTopicFilter(filter)) return false;
  for (const p of patterns) if (!isValidTopicFilter(p)) return false;
  return !someName([filterLevels(filter)], patterns.map(filterLevels));
}

/** Whether some topic name matches both filters (`a/+` and `+/b`: `a/b`; `#` and `$SYS/#`: none). */
export function filtersIntersect(a: string, b: string): boolean {
  return isValidTopicFilter(a) && isValidTopicFilter(b) && someName([filterLevels(a), filterLevels(b)], []);
}
