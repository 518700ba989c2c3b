// One agent per state directory: <stateDir>/agent.lock holds the pid of the agent that owns it.
// Two agents on one state directory would both append to the audit log, fight over the control
// socket and overwrite each other's snapshot files. The lock itself: src/store/dir-lock.ts.
import { lockDirectory, type DirLock } from '../store/dir-lock.js';

export const LOCK_FILE = 'agent.lock';

export type StateLock = DirLock;

/** Takes the state directory's lock, or throws EW_STATE_LOCKED naming the agent that holds it. */
export function lockStateDir(stateDir: string): Promise<StateLock> {
  return lockDirectory(stateDir, LOCK_FILE, (pid) => `another agent (pid ${pid}) is running on this state directory; stop it first, or give this one another --state-dir`);
}
