// Uploading the audit log to the cloud (SPEC section 6: "uploaded when online"): JSON Lines on
// <prefix>audit, read from a persisted cursor (audit-upload.json in the state directory).
//
// An upload runs on the schedule (schedule.auditUpload), when the link comes online, and by volume:
// the log urges it every `everyBytes` written (a sixteenth of audit.maxBytes, at most 128 KiB). So
// while the link is up the records not yet uploaded stay far fewer than a file of the log holds, and
// rotation — which drops records older than a whole file — drops only uploaded ones. Only while the
// link is online: offline, the records stay in the audit log, whose bound counts and records exactly
// what it drops (a "lost" line); in the outbox they would compete with telemetry for its bound, and
// a drop there could not say which records were lost.
//
// One round reads up to ROUND_CHUNKS chunks, queues them together (one group commit of the outbox)
// and then persists the cursor once. A crash between the two sends those chunks again after the
// restart: at least once, and each line's seq lets the cloud drop the repeats.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { writeFileAtomic } from '../store/atomic-file.js';
import { seqAndTime } from './audit-entry.js';
import type { AuditLog } from './audit-log.js';
import { auditBacklogBytes, readAuditSince, type AuditCursor } from './audit-upload.js';

export const AUDIT_CURSOR_FILE = 'audit-upload.json';
/** Chunks queued per round, before the cursor is persisted. */
const ROUND_CHUNKS = 4;
/** Rounds per run: a run ends, and the next urge or the schedule goes on from the cursor. */
const MAX_ROUNDS = 64;

export interface AuditSink {
  /** True while the cloud link is online. */
  online(): boolean;
  /** Queues one chunk durably (the outbox). */
  enqueue(text: string): Promise<unknown>;
  /** Largest chunk the queue takes. */
  readonly maxChunkBytes: number;
}

/** Audit bytes written that start an upload: a sixteenth of the bound, at least 4 KiB, at most 128 KiB. */
export const uploadEveryBytes = (maxBytes: number): number => Math.max(4096, Math.min(128 * 1024, Math.floor(maxBytes / 16)));

/** seq and time of the last line of a chunk (whole lines, each ending in \n). */
function lastLineMark(text: string): { seq: number; time: string } | undefined {
  const end = text.length - 1;
  return end <= 0 ? undefined : seqAndTime(text.slice(text.lastIndexOf('\n', end - 1) + 1, end));
}

export class AuditUploader {
  private cursor: AuditCursor | null = null;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private readonly dir: string;
  private readonly cursorFile: string;

  private constructor(
    private readonly audit: AuditLog,
    private readonly sink: AuditSink,
    stateDir: string,
    private readonly log: Logger,
  ) {
    this.dir = audit.dir;
    this.cursorFile = join(stateDir, AUDIT_CURSOR_FILE);
  }

  /** Loads the cursor and ties the log to this uploader (urged by volume; losses counted from the cursor). */
  static async start(audit: AuditLog, sink: AuditSink, stateDir: string, maxBytes: number, log: Logger): Promise<AuditUploader> {
    const u = new AuditUploader(audit, sink, stateDir, log);
    u.cursor = await u.loadCursor();
    if (u.cursor?.seq !== undefined && u.cursor.time !== undefined) audit.markUploaded(u.cursor.seq, u.cursor.time);
    else if (u.cursor === null) audit.markUploaded(0, new Date(0).toISOString());
    // A cursor from before lines had a seq: nothing is counted as lost until the first upload says where it is.
    audit.attachUploader({ urge: () => u.urge(), everyBytes: uploadEveryBytes(maxBytes) });
    return u;
  }

  /** Bytes of the log not yet uploaded (status). */
  backlogBytes(): Promise<number | null> {
    return auditBacklogBytes(this.dir, this.cursor).catch(() => null);
  }

  /** Uploads now, or once more after the run in progress. Never throws. */
  urge(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.run();
        } while (this.again && !this.stopped);
      } catch (err) {
        this.log.error({ job: 'audit-upload', err: (err as Error).message }, 'audit upload failed');
      } finally {
        this.running = undefined;
      }
    })();
  }

  /** No new runs; resolves when the one in progress has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  private async run(): Promise<void> {
    const chunkBytes = Math.max(4096, Math.min(256 * 1024, this.sink.maxChunkBytes - 1024));
    for (let round = 0; round < MAX_ROUNDS && this.sink.online() && !this.stopped; round++) {
      let next = this.cursor;
      const texts: string[] = [];
      for (let k = 0; k < ROUND_CHUNKS; k++) {
        const chunk = await readAuditSince(this.dir, next, chunkBytes);
        if (chunk.skipped) this.log.warn({ afterSeq: next?.seq ?? null }, 'audit upload resumes after records that were rotated away (see the "lost" audit line)');
        if (chunk.text.length > 0) texts.push(chunk.text);
        if (chunk.next !== null) {
          const mark = lastLineMark(chunk.text);
          next = mark !== undefined ? { ...chunk.next, seq: mark.seq, time: mark.time } : { ...chunk.next, ...(next?.seq === undefined ? {} : { seq: next.seq, time: next.time }) };
        }
        if (chunk.text.length === 0 || chunk.text.length < chunkBytes / 2) break;
      }
      await Promise.all(texts.map((text) => this.sink.enqueue(text)));
      const prev = this.cursor;
      if (next !== null && (next.ino !== prev?.ino || next.offset !== prev.offset)) {
        this.cursor = next;
        if (next.seq !== undefined && next.time !== undefined) this.audit.markUploaded(next.seq, next.time);
        await writeFileAtomic(this.cursorFile, JSON.stringify(next));
      }
      if (texts.length < ROUND_CHUNKS) return;
    }
  }

  private async loadCursor(): Promise<AuditCursor | null> {
    const file = this.cursorFile;
    try {
      const v = JSON.parse(await readFile(file, 'utf8')) as Partial<AuditCursor>;
      if (Number.isSafeInteger(v.ino) && Number.isSafeInteger(v.offset) && v.offset! >= 0 && typeof v.head === 'string') {
        const mark = Number.isSafeInteger(v.seq) && v.seq! >= 0 && typeof v.time === 'string' ? { seq: v.seq!, time: v.time } : {};
        return { ino: v.ino!, head: v.head, offset: v.offset!, ...mark };
      }
      this.log.warn({ file }, 'audit upload cursor unreadable: uploading the whole audit log again');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ file, err: (err as Error).message }, 'audit upload cursor unreadable: uploading the whole audit log again');
    }
    return null;
  }
}
