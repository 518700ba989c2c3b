import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EwError } from '../../src/errors.js';
import {
  copyFileAtomic,
  FileTooLargeError,
  isTempFileName,
  readFileBounded,
  removeStaleTempFiles,
  writeFileAtomic,
  writeFileAtomicSync,
} from '../../src/store/atomic-file.js';

const writers = [
  { name: 'writeFileAtomic', write: writeFileAtomic },
  {
    name: 'writeFileAtomicSync',
    write: async (p: string, d: Uint8Array | string, o?: { mode?: number }) => writeFileAtomicSync(p, d, o),
  },
];

for (const { name, write } of writers) {
  t.test(`${name}: writes, replaces, leaves no temp file`, async (t) => {
    const dir = t.testdir();
    const target = join(dir, 'state.bin');
    await write(target, 'first');
    t.equal(readFileSync(target, 'utf8'), 'first');
    await write(target, new Uint8Array([1, 2, 3, 0, 255]));
    t.same([...readFileSync(target)], [1, 2, 3, 0, 255], 'bytes replace the old content');
    await write(target, '');
    t.equal(readFileSync(target).length, 0, 'an empty file can be written');
    const big = Buffer.alloc(3 * 1024 * 1024 + 7, 0xab);
    await write(target, big);
    t.ok(readFileSync(target).equals(big), 'a large buffer is written whole');
    t.same(readdirSync(dir), ['state.bin'], 'no temp file is left');
  });

  t.test(`${name}: file mode`, async (t) => {
    const dir = t.testdir();
    await write(join(dir, 'a'), 'x');
    t.equal(statSync(join(dir, 'a')).mode & 0o777, 0o600, 'default 0600');
    await write(join(dir, 'b'), 'x', { mode: 0o640 });
    t.equal(statSync(join(dir, 'b')).mode & 0o777, 0o640 & ~process.umask());
  });

  t.test(`${name}: a failed rename removes the temp file and names path and step`, async (t) => {
    const dir = t.testdir({ 'target': { 'inside': 'x' } });
    const target = join(dir, 'target');
    const err = await write(target, 'data').then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof EwError, 'an EwError');
    const e = err as EwError;
    t.equal(e.code, 'EW_STORE_IO');
    t.equal(e.where, target);
    t.match(e.message, target);
    t.match(e.message, /cannot rename .* over the file/);
    t.same(readdirSync(dir), ['target'], 'the temp file was removed');
    t.equal(readFileSync(join(target, 'inside'), 'utf8'), 'x', 'the target is untouched');
  });

  t.test(`${name}: a missing directory is EW_STORE_IO naming the temp-file step`, async (t) => {
    const dir = t.testdir();
    const target = join(dir, 'no-such-dir', 'f');
    await t.rejects(write(target, 'data'), { code: 'EW_STORE_IO', where: target, message: /cannot create temp file .*ENOENT/ });
  });
}

t.test('concurrent writes to one target: one of them wins whole, no temp left', async (t) => {
  const dir = t.testdir();
  const target = join(dir, 'f');
  const contents = Array.from({ length: 20 }, (_, i) => `content-${i}-`.repeat(1000));
  await Promise.all(contents.map((c) => writeFileAtomic(target, c)));
  t.ok(contents.includes(readFileSync(target, 'utf8')));
  t.same(readdirSync(dir), ['f']);
});

t.test('readFileBounded', async (t) => {
  const dir = t.testdir({ 'small': 'hello', 'exact': 'x'.repeat(100), 'sub': {} });
  t.equal(await readFileBounded(join(dir, 'missing'), 100), undefined, 'missing file: undefined');
  t.equal(await readFileBounded(join(dir, 'sub', 'missing', 'deeper'), 100), undefined, 'missing parent: undefined');
  t.equal((await readFileBounded(join(dir, 'small'), 100))?.toString(), 'hello');
  t.equal((await readFileBounded(join(dir, 'exact'), 100))?.length, 100, 'exactly maxBytes is allowed');
  const empty = join(dir, 'empty');
  writeFileSync(empty, '');
  t.equal((await readFileBounded(empty, 100))?.length, 0, 'empty file: empty buffer');

  const tooLarge = await readFileBounded(join(dir, 'exact'), 99).catch((e: unknown) => e);
  t.ok(tooLarge instanceof FileTooLargeError);
  t.ok(tooLarge instanceof EwError);
  t.match(tooLarge, { code: 'EW_STORE_IO', size: 100, maxBytes: 99, where: join(dir, 'exact'), message: /100 bytes is more than the 99 allowed/ });
  await t.rejects(readFileBounded(join(dir, 'exact'), 99, { tooLargeCode: 'EW_SNAPSHOT_TOO_LARGE' }), {
    code: 'EW_SNAPSHOT_TOO_LARGE',
  });
  await t.rejects(readFileBounded(join(dir, 'sub'), 100), { code: 'EW_STORE_IO', message: /not a regular file/ });
});

t.test('readFileBounded refuses a 50 MB sparse file without opening it', async (t) => {
  const dir = t.testdir();
  const huge = join(dir, 'huge');
  writeFileSync(huge, '');
  await fsp.truncate(huge, 50 * 1024 * 1024);
  let opens = 0;
  const mocked = await t.mockImport<typeof import('../../src/store/atomic-file.js')>('../../src/store/atomic-file.js', {
    'node:fs/promises': {
      ...fsp,
      open: (...args: Parameters<typeof fsp.open>) => {
        opens++;
        return fsp.open(...args);
      },
    },
  });
  const started = process.hrtime.bigint();
  await t.rejects(mocked.readFileBounded(huge, 1024 * 1024), { code: 'EW_STORE_IO', size: 50 * 1024 * 1024 });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.equal(opens, 0, 'the file was never opened');
  t.ok(ms < 1000, `refused at once (${ms.toFixed(1)} ms)`);
  t.equal((await mocked.readFileBounded(huge, 64 * 1024 * 1024))?.length, 50 * 1024 * 1024, 'read when allowed');
  t.equal(opens, 1, 'the spy sees opens');
});

t.test('temp file names and stale temp clean-up', async (t) => {
  const dir = t.testdir({
    'current.cose': 'keep',
    '.current.cose.tmp-123-0123456789ab': 'stale',
    '.time-floor.json.tmp-9-abcdefabcdef': 'stale',
    '.hidden': 'keep',
    'x.tmp-1-0123456789ab': 'keep (not dot-prefixed)',
  });
  t.ok(isTempFileName('.current.cose.tmp-123-0123456789ab'));
  t.notOk(isTempFileName('current.cose'));
  t.notOk(isTempFileName('.current.cose.tmp-123-xyz'));
  const removed = await removeStaleTempFiles(dir);
  t.same(removed.sort(), [join(dir, '.current.cose.tmp-123-0123456789ab'), join(dir, '.time-floor.json.tmp-9-abcdefabcdef')].sort());
  t.same(readdirSync(dir).sort(), ['.hidden', 'current.cose', 'x.tmp-1-0123456789ab']);
  t.same(await removeStaleTempFiles(join(dir, 'missing')), [], 'missing directory: nothing to do');
});

t.test('temp files written by writeFileAtomic match isTempFileName', async (t) => {
  const dir = t.testdir();
  mkdirSync(join(dir, 'target'));
  // Make the rename fail, intercept unlink so the temp file stays, and look at its name.
  const mocked = await t.mockImport<typeof import('../../src/store/atomic-file.js')>('../../src/store/atomic-file.js', {
    'node:fs/promises': { ...fsp, unlink: async () => undefined },
  });
  await t.rejects(mocked.writeFileAtomic(join(dir, 'target'), 'x'), { code: 'EW_STORE_IO' });
  const names = readdirSync(dir).filter((n) => n !== 'target');
  t.equal(names.length, 1);
  t.ok(isTempFileName(names[0]!), `${names[0]} is recognized as a temp file`);
});

t.test('copyFileAtomic copies in pieces only a source with the expected sha256', async (t) => {
  const dir = t.testdir();
  const src = join(dir, 'src');
  const dst = join(dir, 'dst');
  const data = randomBytes(3 * 1024 * 1024 + 17); // more than one 1 MiB piece
  writeFileSync(src, data);
  writeFileSync(dst, 'old');
  const sha = createHash('sha256').update(data).digest('hex');
  t.equal(await copyFileAtomic(src, dst, 'ab'.repeat(32)), false, 'a different sha256: not copied');
  t.equal(readFileSync(dst, 'utf8'), 'old', 'the target is left as it was');
  t.equal(await copyFileAtomic(src, dst, sha), true);
  t.ok(readFileSync(dst).equals(data), 'copied');
  t.equal(await copyFileAtomic(join(dir, 'missing'), dst, sha), false, 'a missing source');
  mkdirSync(join(dir, 'adir'));
  t.equal(await copyFileAtomic(join(dir, 'adir'), dst, sha), false, 'a directory');
  t.ok(readFileSync(dst).equals(data));
  t.same(readdirSync(dir).sort(), ['adir', 'dst', 'src'], 'no temp files left');
});
