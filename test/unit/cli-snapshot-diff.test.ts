// snapshot diff's credential lines: `!` where sessions end, `~` where credentials only grow.
import t from 'tap';
import { credentialLines } from '../../src/cli/snapshot-diff.js';
import type { CredentialChange } from '../../src/decide/credential-diff.js';

t.test('credential lines', async (t) => {
  t.same(credentialLines([]), ['no credential changes: no session ends']);
  const changes: CredentialChange[] = [
    { principal: 'chiller-1', kind: 'device', change: 'unserved', dropped: { token: 1 }, added: {} },
    { principal: 'key-old', kind: 'apiKey', change: 'removed', dropped: { secret: 1 }, added: {} },
    { principal: 'mixer-1', kind: 'device', change: 'changed', dropped: { token: 1 }, added: { token: 1 } },
    { principal: 'op-bob', kind: 'user', change: 'revoked', dropped: { password: 1, token: 2 }, added: {} },
    { principal: 'oven-1', kind: 'device', change: 'changed', dropped: {}, added: { certificate: 1 } },
  ];
  t.same(credentialLines(changes), [
    'credential changes: the sessions of 4 principals end when the gateway takes the new snapshot',
    '! device chiller-1 no longer served by this gateway: its sessions end',
    '! apiKey key-old removed: its sessions end (1 secret)',
    '! device mixer-1 credentials changed: sessions on 1 token end; added 1 token',
    '! user op-bob revoked: its sessions end (1 password, 2 tokens)',
    '~ device oven-1 credentials changed: no session ends; added 1 certificate',
  ]);
});

t.test('a long list stays readable: 50 lines, then a count', async (t) => {
  const many: CredentialChange[] = Array.from({ length: 120 }, (_, i) => ({ principal: `d-${i}`, kind: 'device', change: 'removed', dropped: { token: 1 }, added: {} }));
  const lines = credentialLines(many);
  t.equal(lines.length, 52);
  t.equal(lines[0], 'credential changes: the sessions of 120 principals end when the gateway takes the new snapshot');
  t.equal(lines[51], '(+70 more credential changes; --json lists all)');
});
