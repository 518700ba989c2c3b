// The agent's control socket (<stateDir>/control.sock, mode 0600): one JSON request per line, one
// JSON response per line. Used by `edgewarden snapshot install`, `edgewarden status` and
// `edgewarden explain --client-id`.
//
// A snapshot is installed as `{"cmd":"install","length":N,"source":...}\n` followed by its N raw
// bytes: the agent reads them into one buffer of that size (N at most maxSnapshotBytes) — no base64,
// no JSON string of tens of MB. (`"snapshot": "<base64>"` in the line itself is still understood.)
import { createServer, createConnection, type Server } from 'node:net';
import { chmod, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { EwError } from '../errors.js';

export const CONTROL_SOCKET = 'control.sock';
/** Default bound of one request: a 32 MiB snapshot in base64, and the JSON around it. */
export const MAX_REQUEST_BYTES = 48 * 1024 * 1024;
/** A request must arrive whole within this long; a client that sends slowly or never ends its line is dropped. */
export const REQUEST_TIMEOUT_MS = 30_000;

export type ControlRequest =
  | { cmd: 'install'; snapshot?: string /* base64 */; length?: number; source?: string; /** the raw bytes that followed the line */ bytes?: Buffer }
  | { cmd: 'status' }
  /** A connected client's description (`explain --client-id`): `{ok: true, client: ClientInfo | null, snapshotVersion}`. */
  | { cmd: 'client'; clientId: string };
export type ControlResponse = { ok: true; [k: string]: unknown } | { ok: false; code: string; message: string };

export function controlSocketPath(stateDir: string): string {
  return join(stateDir, CONTROL_SOCKET);
}

/** Longest Unix socket path Linux takes (sun_path is 108 bytes, NUL included). */
const MAX_SOCKET_PATH_BYTES = 107;

/**
 * The error for a control socket path longer than a Unix socket takes, or undefined. No agent can
 * listen on such a path; connecting to it fails differently by Node version (Node 20: ENOENT on the
 * truncated path, Node 24: EINVAL), so both sides check the length first.
 */
export function socketPathTooLong(path: string): EwError | undefined {
  const bytes = Buffer.byteLength(path);
  if (bytes <= MAX_SOCKET_PATH_BYTES) return undefined;
  return new EwError('EW_STORE_IO', `the control socket path is ${bytes} bytes, too long: more than the ${MAX_SOCKET_PATH_BYTES} a Unix socket allows: use a shorter state directory`, { where: path });
}

export interface ControlServerOptions {
  /** Largest request line in bytes (default MAX_REQUEST_BYTES). */
  readonly maxRequestBytes?: number;
  /** Time for a request to arrive whole (default REQUEST_TIMEOUT_MS). */
  readonly requestTimeoutMs?: number;
  /** Largest snapshot sent as raw bytes after the request line (default 32 MiB). */
  readonly maxSnapshotBytes?: number;
}

export async function startControlServer(stateDir: string, handle: (req: ControlRequest) => Promise<ControlResponse>, opts: ControlServerOptions = {}): Promise<Server> {
  const maxBytes = opts.maxRequestBytes ?? MAX_REQUEST_BYTES;
  const maxSnapshotBytes = opts.maxSnapshotBytes ?? 32 * 1024 * 1024;
  const timeoutMs = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const path = controlSocketPath(stateDir);
  const tooLong = socketPathTooLong(path);
  if (tooLong) throw tooLong;
  await rm(path, { force: true });
  const server = createServer((socket) => {
    // One request line per connection. Chunks are kept as they come and only each new chunk is
    // searched for the end of the line: linear in the request's size, bounded by maxBytes and timeoutMs.
    const chunks: Buffer[] = [];
    let size = 0;
    let answered = false;
    const answer = (res: ControlResponse) => {
      if (answered) return;
      answered = true;
      chunks.length = 0;
      // Whatever else the client sends is read and dropped (not kept) until it closes; the timer
      // below cuts a client that goes on sending.
      socket.removeAllListeners('data');
      socket.resume();
      socket.end(JSON.stringify(res) + '\n');
    };
    const timer = setTimeout(() => {
      if (answered) socket.destroy();
      else answer({ ok: false, code: 'EW_USAGE', message: `request not received whole within ${timeoutMs} ms` });
    }, timeoutMs);
    timer.unref();
    socket.on('error', () => undefined);
    socket.on('close', () => clearTimeout(timer));
    socket.on('data', (chunk: Buffer) => {
      if (answered) return;
      const nl = chunk.indexOf(0x0a);
      const part = nl < 0 ? chunk : chunk.subarray(0, nl);
      size += part.length;
      if (size > maxBytes) {
        answer({ ok: false, code: 'EW_USAGE', message: `request too large: more than ${maxBytes} bytes` });
        return;
      }
      chunks.push(part);
      if (nl < 0) return;
      let req: ControlRequest;
      try {
        req = JSON.parse(Buffer.concat(chunks, size).toString('utf8')) as ControlRequest;
      } catch {
        answer({ ok: false, code: 'EW_USAGE', message: 'request is not JSON' });
        return;
      }
      chunks.length = 0;
      socket.removeAllListeners('data');
      const run = (r: ControlRequest) => {
        clearTimeout(timer);
        handle(r).then(
          (res) => answer(res),
          (err: Error) => answer({ ok: false, code: 'EW_STORE_IO', message: err.message }),
        );
      };
      const length = req !== null && typeof req === 'object' && req.cmd === 'install' ? req.length : undefined;
      if (length === undefined) return run(req);
      // The snapshot's raw bytes follow the line: read exactly `length` of them into one buffer.
      if (!Number.isSafeInteger(length) || length < 0 || length > maxSnapshotBytes) {
        answer({ ok: false, code: 'EW_SNAPSHOT_TOO_LARGE', message: `a snapshot of ${String(length)} bytes: more than the ${maxSnapshotBytes} allowed` });
        return;
      }
      const bytes = Buffer.allocUnsafe(length);
      let got = 0;
      const take = (data: Buffer) => {
        const n = Math.min(data.length, length - got);
        data.copy(bytes, got, 0, n);
        got += n;
        if (got === length) {
          socket.removeAllListeners('data');
          run({ ...req, bytes } as ControlRequest);
        }
      };
      take(chunk.subarray(nl + 1));
      if (got < length) socket.on('data', take);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  return server;
}

/** Hands a snapshot to the running agent: the request line, then its raw bytes. */
export function controlInstall(stateDir: string, bytes: Buffer, source: string, timeoutMs = 30_000): Promise<ControlResponse> {
  return controlRequest(stateDir, { cmd: 'install', length: bytes.length, source }, timeoutMs, bytes);
}

/**
 * Sends one request to a running agent (and `body` after its line); rejects with ENOENT/ECONNREFUSED
 * when none runs, and with socketPathTooLong's EwError when the state directory's socket path is
 * too long for any agent to listen on.
 */
export function controlRequest(stateDir: string, req: ControlRequest, timeoutMs = 30_000, body?: Buffer): Promise<ControlResponse> {
  const path = controlSocketPath(stateDir);
  const tooLong = socketPathTooLong(path);
  if (tooLong) return Promise.reject(tooLong);
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('the agent did not answer in time'));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      socket.write(JSON.stringify(req) + '\n');
      if (body !== undefined) socket.write(body);
    });
    socket.on('data', (c: string) => (buf += c));
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf) as ControlResponse);
      } catch {
        reject(new Error('the agent sent an unreadable answer'));
      }
    });
  });
}
