// qlobber 8.0.1 (pinned exactly): the subscription trie our session store (../session-store.ts) keeps
// persistent sessions' subscriptions in, the same one aedes-persistence uses. `QlobberSub` is not
// exported by qlobber's main module: it is a deep import of the file qlobber ships for aedes
// (`qlobber/aedes/qlobber-sub`), a path a qlobber release may move. Not a defect. No upstream issue.
//
//   QlobberSub   add(topic, { clientId, topic, qos, ... }), remove(topic, { clientId, topic }),
//                match(topic) -> one entry per (clientId, filter), subscriptionsCount
//   QlobberTrue  add(topic), test(topic) (qlobber's main module)
//
// Shape test: test/unit/upstream-qlobber-sub.test.ts (fails when the path or the trie's behaviour
// changes).
//
// Upstream: exporting QlobberSub from qlobber's main module (`require('qlobber').QlobberSub`).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** A subscription as the trie keeps it (aedes-persistence's shape). */
export interface TrieSub {
  clientId: string;
  topic: string;
  qos: number;
  rh?: number;
  rap?: boolean;
  nl?: boolean;
}

export interface QlobberSubTrie {
  subscriptionsCount: number;
  add(topic: string, value: TrieSub): void;
  remove(topic: string, value: { clientId: string; topic: string }): void;
  match(topic: string): TrieSub[];
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const QlobberSub = require('qlobber/aedes/qlobber-sub') as new (opts: object) => QlobberSubTrie;
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const { QlobberTrue } = require('qlobber') as { QlobberTrue: new (opts: object) => { add(topic: string): void; test(topic: string): boolean } };
