// The snapshot inbox: files are taken once settled, so a snapshot still being written (cp creates
// the file, then writes it) is never refused as truncated; accepted files go, refused ones are kept
// aside with the reason.
import t from 'tap';
import { existsSync, readFileSync, utimesSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SnapshotInbox } from '../../src/agent/inbox.js';
import { EwError } from '../../src/errors.js';

const GOOD = Buffer.from('GOOD:' + 'x'.repeat(4000));

function harness(dir: string, settleMs: number) {
  const installed: Buffer[] = [];
  const results: { file: string; ok: boolean; code?: string }[] = [];
  const inbox = new SnapshotInbox(
    dir,
    async (bytes) => {
      const b = Buffer.from(bytes);
      // Stands in for snapshot verification: anything but the complete file is refused as malformed.
      if (!b.equals(GOOD)) throw new EwError('EW_SNAPSHOT_MALFORMED', `not the whole snapshot (${b.length} bytes)`);
      installed.push(b);
    },
    1 << 20,
    (file, r) => results.push(r.ok ? { file, ok: true } : { file, ok: false, code: r.code }),
    200,
    settleMs,
  );
  return { inbox, installed, results };
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(20);
  }
  return cond();
}

t.test('a file written in two parts is taken whole, once', async (t) => {
  const dir = t.testdir({});
  // Settling takes 2 s here: the half-written file must still be unsettled when the check below runs.
  const { inbox, installed, results } = harness(dir, 2000);
  await inbox.start();
  t.teardown(() => inbox.close());
  const file = join(dir, 'v2.cose');
  writeFileSync(file, GOOD.subarray(0, 1000)); // the watcher and the 200 ms scans see this half
  await sleep(400);
  t.same(results, [], 'nothing taken or refused while it is being written');
  appendFileSync(file, GOOD.subarray(1000));
  t.ok(await until(() => installed.length === 1, 15_000), 'taken once settled');
  await sleep(400);
  t.equal(installed.length, 1, 'once');
  t.ok(installed[0]!.equals(GOOD), 'the whole file');
  t.same(results.map((r) => r.ok), [true]);
  t.notOk(existsSync(file), 'an accepted file is removed');
});

t.test('a settled file is taken at once; a bad one is set aside with its reason', async (t) => {
  const dir = t.testdir({});
  const { inbox, installed, results } = harness(dir, 60_000);
  writeFileSync(join(dir, 'old.cose'), GOOD);
  writeFileSync(join(dir, 'junk.cose'), 'junk');
  writeFileSync(join(dir, 'notes.txt'), 'ignored');
  const past = new Date(Date.now() - 120_000);
  for (const n of ['old.cose', 'junk.cose']) utimesSync(join(dir, n), past, past);
  // A modification time in the future (the clock was set back) does not hold a file forever.
  writeFileSync(join(dir, 'future.cose'), GOOD);
  const future = new Date(Date.now() + 3600_000);
  utimesSync(join(dir, 'future.cose'), future, future);
  await inbox.start();
  t.teardown(() => inbox.close());
  t.equal(installed.length, 2, 'the old and the future-dated file are taken by the first scan');
  t.same(results.filter((r) => !r.ok).map((r) => r.code), ['EW_SNAPSHOT_MALFORMED']);
  t.match(readFileSync(join(dir, 'junk.cose.refused.txt'), 'utf8'), /^EW_SNAPSHOT_MALFORMED: /);
  t.ok(existsSync(join(dir, 'junk.cose.refused')), 'kept aside');
  t.ok(existsSync(join(dir, 'notes.txt')), 'other files are left alone');
  // A fresh file waits for the settling time (here a minute): not taken within a few scans.
  writeFileSync(join(dir, 'fresh.cose'), GOOD);
  await sleep(700);
  t.equal(installed.length, 2, 'a fresh file waits');
  t.ok(existsSync(join(dir, 'fresh.cose')));
});
