// Snapshots copied into the inbox with cp, one after another, each a few MB: every one is taken
// whole (never refused as truncated while cp is still writing it) and in the order they were
// dropped (not by name: "v10" sorts before "v9"), so each is accepted.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlRequest } from '../../src/agent/control.js';
import { agentFor, exampleSnapshot, until } from '../helpers/agent.js';
import type { SnapshotPayload } from '../../src/policy/schema.js';

const FILLER = 20_000; // things: about 2 MB a snapshot

t.test('20 multi-MB snapshots copied in with cp, one after another: all accepted, in order', async (t) => {
  const src = mkdtempSync(join(tmpdir(), 'ew-inbox-src-'));
  t.teardown(() => rmSync(src, { recursive: true, force: true }));
  const grow = (p: SnapshotPayload) => {
    const first = p.things![0]!;
    for (let i = 0; i < FILLER; i++) p.things!.push({ ...first, id: `filler-${i}`, tokenHashes: [`sha256:${i.toString(16).padStart(64, '0')}`] });
  };
  const versions = Array.from({ length: 20 }, (_, i) => i + 2);
  for (const v of versions) writeFileSync(join(src, `snap-v${v}.cose`), exampleSnapshot(v, grow));
  const agent = await agentFor(t);
  const inbox = join(agent.stateDir, 'inbox');
  for (const v of versions) {
    const r = spawnSync('cp', [join(src, `snap-v${v}.cose`), join(inbox, `snap-v${v}.cose`)]);
    t.equal(r.status, 0, `cp v${v}`);
  }
  const version = async () => {
    const r = await controlRequest(agent.stateDir, { cmd: 'status' });
    return r.ok ? (r.status as { snapshotVersion: number | null }).snapshotVersion : null;
  };
  let v: number | null = null;
  t.ok(await until(() => (void version().then((x) => (v = x)), v === 21 && readdirSync(inbox).length === 0), 120_000), `version 21 in force, the inbox empty (version ${v}, left: ${readdirSync(inbox).join(', ')})`);
  const refused = agent.logs().filter((l) => /snapshot refused/.test(l));
  t.same(refused, [], 'none refused');
  t.equal(agent.logs().filter((l) => /"msg":"snapshot accepted"/.test(l)).length, 20, 'each accepted');
  t.notOk(readdirSync(inbox).some((n) => n.endsWith('.refused')));
  t.notOk(existsSync(join(inbox, 'snap-v21.cose')));
});
