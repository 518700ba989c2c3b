// Asserts that `fn` throws the EwError `code` with a message matching `msg` (a test fails when it returns).
import type { Test } from 'tap';
import { EwError, type ErrorCode } from '../../src/errors.js';

export function refusedWith(t: Test, fn: () => unknown, code: ErrorCode, msg: RegExp, label: string): void {
  try {
    fn();
    t.fail(`${label}: accepted`);
  } catch (err) {
    t.ok(err instanceof EwError, `${label}: EwError (${(err as Error).message})`);
    t.equal((err as EwError).code, code, label);
    t.match((err as Error).message, msg, `${label}: message`);
  }
}
