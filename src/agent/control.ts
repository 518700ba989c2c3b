// The agent's control socket (<stateDir>/control.sock, mode 0600): one JSON request per line, one
// JSON response per line. Used by `edgewarden snapshot install` and `edgewarden status`.
import { createServer, createConnection, type Server } from 'node:net';
import { chmod, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { EwError } from '../errors.js';

export const CONTROL_SOCKET = 'control.sock';
const MAX_REQUEST_BYTES = 48 * 1024 * 1024;

export type ControlRequest = { cmd: 'install'; snapshot: string /* base64 */; source?: string } | { cmd: 'status' };
export type ControlResponse = { ok: true; [k: string]: unknown } | { ok: false; code: string; message: string };

export function controlSocketPath(stateDir: string): string {
  return join(stateDir, CONTROL_SOCKET);
}

/** Longest Unix socket path Linux takes (sun_path is 108 bytes, NUL included). */
const MAX_SOCKET_PATH_BYTES = 107;

export async function startControlServer(stateDir: string, handle: (req: ControlRequest) => Promise<ControlResponse>): Promise<Server> {
  const path = controlSocketPath(stateDir);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new EwError('EW_STORE_IO', `the control socket path is ${Buffer.byteLength(path)} bytes, more than the ${MAX_SOCKET_PATH_BYTES} a Unix socket allows: use a shorter state directory`, { where: path });
  }
  await rm(path, { force: true });
  const server = createServer((socket) => {
    let buf = '';
    socket.setEncoding('utf8');
    socket.on('error', () => undefined);
    socket.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST_BYTES) {
        socket.end(JSON.stringify({ ok: false, code: 'EW_USAGE', message: 'request too large' }) + '\n');
        return;
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = '';
      let req: ControlRequest;
      try {
        req = JSON.parse(line) as ControlRequest;
      } catch {
        socket.end(JSON.stringify({ ok: false, code: 'EW_USAGE', message: 'request is not JSON' }) + '\n');
        return;
      }
      handle(req).then(
        (res) => socket.end(JSON.stringify(res) + '\n'),
        (err: Error) => socket.end(JSON.stringify({ ok: false, code: 'EW_STORE_IO', message: err.message }) + '\n'),
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  return server;
}

/** Sends one request to a running agent; rejects with ENOENT/ECONNREFUSED when none runs. */
export function controlRequest(stateDir: string, req: ControlRequest, timeoutMs = 30_000): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(controlSocketPath(stateDir));
    let buf = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('the agent did not answer in time'));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(JSON.stringify(req) + '\n'));
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
