// The `edgewarden` command line: one file per command, wired here.
import { Command, CommanderError } from 'commander';
import { EwError } from '../errors.js';
import { packageVersion } from './io.js';
import { processIo, type Io } from './output.js';
import type { PublishOptions } from './snapshot-publish.js';
import type { RunOptions } from './run.js';
import { LOG_LEVELS } from '../config/log-levels.js';
import type { AuditStatsOptions, AuditTailOptions } from './audit.js';
import type { explainCommand } from './explain.js';
import type { signCommand } from './snapshot-sign.js';
import type { verifyCommand } from './snapshot.js';
import type { FleetSignCliOptions } from './fleet-sign.js';
import type { FleetPublishOptions } from './fleet-publish.js';
import type { EndorseOptions } from './key-endorse.js';

// Each command's module is imported when that command runs, not before: `edgewarden status` does not
// load the broker (aedes), the cloud link (MQTT.js) or the metrics (prom-client), and `edgewarden run`
// does not load the snapshot signing or the audit reader (bench/README.md, "Where the memory goes").

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function buildProgram(io: Io, setExit: (code: number) => void): Command {
  const program = new Command('edgewarden')
    .description('IoT gateway agent: local MQTT broker and cloud bridge enforcing signed permission snapshots')
    .version(`${packageVersion()} (node ${process.versions.node})`, '-V, --version', 'print edgewarden\'s version and the Node version it runs on')
    .enablePositionalOptions()
    .showHelpAfterError()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) });

  program
    .command('catalog')
    .description('print the permission catalog (104 Servitly permissions; --legacy adds the legacy names)')
    .option('--json', 'print JSON')
    .option('--legacy', 'include legacy names')
    .action(async (o: { json?: boolean; legacy?: boolean }) => (await import('./catalog.js')).catalogCommand(o, io.out));

  program
    .command('keygen')
    .description('make an Ed25519 key pair for signing snapshots')
    .option('-o, --out <dir>', 'directory for the key files', '.')
    .option('-n, --name <name>', 'file name stem: <name>.key.pem and <name>.pub.pem', 'snapshot-signing')
    .option('--force', 'overwrite existing key files')
    .action(async (o: { out: string; name: string; force?: boolean }) => setExit((await import('./keygen.js')).keygenCommand(o, io)));

  const key = program.command('key').description('snapshot signing keys: rotation');
  key
    .command('endorse')
    .description('sign, with the old key, an endorsement of a new key (key rotation: docs/snapshots.md)')
    .requiredOption('-k, --key <file>', 'the OLD Ed25519 private key (PEM), trusted by the gateways')
    .requiredOption('--new <file>', 'the NEW public key (PEM) to endorse')
    .requiredOption('-o, --out <file>', 'where to write the endorsement')
    .option('--retire-after <iso>', 'the old key is no longer trusted after this time by a gateway that took the endorsement')
    .option('--retire-in <duration>', 'the same, as a duration from now: 30d, 12h, 90m, 45s, 2w')
    .option('--kid <kid>', 'the old key\'s kid as gateways know it (default: its RFC 7638 thumbprint)')
    .option('--issued-at <iso>', 'issue time (default: now)')
    .action(async (o: EndorseOptions) => setExit((await import('./key-endorse.js')).endorseCommand(o, io)));

  program
    .command('hash')
    .description('print the credential hash of a secret read from standard input, for a policy file')
    .option('--scrypt', 'slow hash for human passwords (default: sha256 for machine tokens and keys)')
    .action(async (o: { scrypt?: boolean }) => setExit((await import('./hash.js')).hashCommand(o, io)));

  program
    .command('token')
    .description('make a high-entropy token (32 random bytes) for a device, API key or application: the token for the client, its sha256 hash for the policy')
    .option('--json', 'print JSON: {"token", "hash"}')
    .action(async (o: { json?: boolean }) => setExit((await import('./token.js')).tokenCommand(o, io)));

  const policy = program.command('policy').description('policy files');
  policy
    .command('schema')
    .description('print the JSON Schema of the policy file')
    .action(async () => io.out(JSON.stringify((await import('../generated/policy-schema.js')).POLICY_FILE_SCHEMA_JSON, null, 2)));

  const snapshot = program.command('snapshot').description('signed permission snapshots');
  snapshot
    .command('sign <policy>')
    .description('validate a policy file and write a signed snapshot (COSE_Sign1, EdDSA)')
    .requiredOption('-k, --key <file>', 'Ed25519 private key (PEM)')
    .requiredOption('--version <n>', 'snapshot version, strictly increasing per gateway')
    .requiredOption('-o, --out <file>', 'where to write the snapshot')
    .option('--issued-at <iso>', 'issue time (default: now)')
    .option('--kid <kid>', 'key id for the header (default: the key\'s RFC 7638 thumbprint)')
    .option('--plain-cbor', 'payload members as plain CBOR maps and arrays, for readers without the record and packed-string extensions (larger, slower to load)')
    .option('--strict', 'refuse a policy with warnings (likely mistakes: a resource group without things, an undefined role, a permission whose module is inactive)')
    .option('--endorsement <file>', 'carry this endorsement of the signing key (edgewarden key endorse) in the unprotected header: gateways trusting the old key take it')
    .action(async (file: string, o: Parameters<typeof signCommand>[1]) => setExit((await import('./snapshot-sign.js')).signCommand(file, o, io)));
  snapshot
    .command('verify <file>')
    .description('check signature and payload; with --gateway also the acceptance rules')
    .option('-t, --trust <key>', 'trusted public key file or directory, or kid=file (repeatable; default: the demo key)', collect)
    .option('--gateway <id>', 'apply the acceptance rules for this gateway')
    .option('--held-version <n>', 'version the gateway holds (with --gateway)')
    .option('--now <iso>', 'system clock to check expiry against (with --gateway)')
    .option('--time-floor <iso>', 'the gateway\'s time floor (with --gateway)')
    .option('--json', 'print JSON')
    .action(async (file: string, o: Parameters<typeof verifyCommand>[1]) => setExit((await import('./snapshot.js')).verifyCommand(file, o, io)));
  snapshot
    .command('inspect <file>')
    .description('print a snapshot as JSON (says whether the signature verifies)')
    .option('-t, --trust <key>', 'trusted public key (repeatable; default: the demo key)', collect)
    .action(async (file: string, o: { trust?: string[] }) => setExit((await import('./snapshot.js')).inspectCommand(file, o, io)));
  snapshot
    .command('diff <a> <b>')
    .description('which principal gains or loses which permission on which things from a to b')
    .option('-t, --trust <key>', 'trusted public key (repeatable; default: the demo key)', collect)
    .option('--json', 'print JSON')
    .option('--limit <n>', 'things listed per line before "+N more"', '10')
    .action(async (a: string, b: string, o: { trust?: string[]; json?: boolean; limit?: string }) => setExit((await import('./snapshot-diff.js')).diffCommand(a, b, o, io)));

  snapshot
    .command('install <file>')
    .description('give a snapshot to the running agent (or, with none running, to its state directory)')
    .option('-c, --config <file>', 'the agent\'s configuration (default: the embedded defaults)')
    .option('--state-dir <dir>', 'the agent\'s state directory (overrides the configuration)')
    .action(async (file: string, o: { config?: string; stateDir?: string }) => setExit(await (await import('./snapshot-install.js')).installCommand(file, o, io)));

  snapshot
    .command('publish <file>')
    .description('(cloud side) verify a snapshot and publish it, retained, to its gateway\'s snapshot topic on an MQTT broker')
    .requiredOption('--url <url>', 'the cloud broker: mqtt://host:port or mqtts://host:port')
    .option('-t, --trust <key>', 'trusted public key to verify it with (repeatable; default: the demo key)', collect)
    .option('--gateway <id>', 'refuse unless the snapshot is for this gateway')
    .option('--prefix <prefix>', 'the gateway\'s topic prefix ({gatewayId} is replaced)', 'edgewarden/{gatewayId}/')
    .option('--username <name>', 'username at the broker')
    .option('--password-file <file>', 'file whose first line is the password')
    .option('--ca <file>', 'CA certificates (PEM) for mqtts')
    .option('--cert <file>', 'client certificate (PEM) for mqtts')
    .option('--key <file>', 'client key (PEM) for mqtts')
    .option('--timeout <seconds>', 'give up after this long', '15')
    .action(async (file: string, o: PublishOptions) => setExit(await (await import('./snapshot-publish.js')).publishCommand(file, o, io)));

  // ── fleet (issue 14): one tenant policy, one snapshot per gateway (docs/fleet.md) ──
  const fleet = program.command('fleet').description('(cloud side) one tenant policy, many gateways: a signed slice each, published to the fleet (docs/fleet.md)');

  // fleet publish
  fleet
    .command('publish <dir>')
    .description('publish, retained, each snapshot of a fleet directory that the broker does not hold yet to its gateway\'s snapshot topic; resumable')
    .requiredOption('--broker <url>', 'the cloud broker: mqtt://host:port or mqtts://host:port')
    .option('-t, --trust <key>', 'trusted public key to verify the snapshots with (repeatable; default: the demo key)', collect)
    .option('--gateway <id>', 'only this gateway (repeatable)', collect)
    .option('--prefix <prefix>', 'the gateways\' topic prefix ({gatewayId} is replaced)', 'edgewarden/{gatewayId}/')
    .option('--username <name>', 'username at the broker')
    .option('--password-file <file>', 'file whose first line is the password')
    .option('--ca <file>', 'CA certificates (PEM) for mqtts')
    .option('--cert <file>', 'client certificate (PEM) for mqtts')
    .option('--key <file>', 'client key (PEM) for mqtts')
    .option('--concurrency <n>', 'publishes awaiting their acknowledgement at most', '32')
    .option('--retries <n>', 'attempts after the first, per snapshot, with exponential back-off', '3')
    .option('--timeout <seconds>', 'wait this long for the connection, and as long for the acknowledgement of each publish', '15')
    .option('--json', 'print the summary as JSON')
    .action(async (dir: string, o: FleetPublishOptions) => setExit(await (await import('./fleet-publish.js')).fleetPublishCommand(dir, o, io)));

  // fleet sign
  fleet
    .command('sign <tenant> <fleet>')
    .description('validate a tenant policy and a fleet file together and write one signed snapshot per gateway, holding only its slice; a gateway whose slice did not change gets none')
    .requiredOption('-k, --key <file>', 'Ed25519 private key (PEM)')
    .requiredOption('-o, --out <dir>', 'the fleet directory: <gateway>.cose files and fleet-manifest.json')
    .option('--kid <kid>', 'key id for the header (default: the key\'s RFC 7638 thumbprint)')
    .option('--issued-at <iso>', 'issue time, and so the version (default: now)')
    .option('-t, --trust <key>', 'public key earlier snapshots were signed with, for the diffs (repeatable; the signing key is always trusted)', collect)
    .option('--threads <n>', 'signing threads (default: one per core; 0: sign in the main thread)')
    .option('--endorsement <file>', 'a key endorsement of the signing key (key endorse), carried in each new snapshot: rotating the key (docs/snapshots.md)')
    .option('--strict', 'refuse a tenant policy with warnings')
    .option('--limit <n>', 'gateway lines shown (default 50; --json lists all)')
    .option('--json', 'print JSON')
    .action(async (tenant: string, fleetFile: string, o: FleetSignCliOptions) => setExit(await (await import('./fleet-sign.js')).fleetSignCommand(tenant, fleetFile, o, io)));
  // ── end fleet ──

  program
    .command('run')
    .description('run the agent: the local MQTT broker enforcing the stored snapshot (until SIGTERM)')
    .option('-c, --config <file>', 'configuration file (default: the embedded defaults: bundled example snapshot, demo key)')
    .option('-p, --port <port>', 'TCP listener port (overrides the configuration; 0 = ephemeral)')
    .option('--state-dir <dir>', 'state directory (overrides the configuration)')
    .option('--log-level <level>', `log level: ${LOG_LEVELS.join(', ')} (overrides log.level)`)
    .option('-v, --verbose', 'log more: -v debug, -vv trace (overrides log.level)', (_: string, n: number) => n + 1, 0)
    .action(async (o: RunOptions) => setExit(await (await import('./run.js')).runCommand(o, io)));

  program
    .command('status')
    .description('the running agent: snapshot and expiry, time floor, clients, cloud link, queue, audit')
    .option('-c, --config <file>', 'the agent\'s configuration (default: the embedded defaults)')
    .option('--state-dir <dir>', 'the agent\'s state directory (overrides the configuration)')
    .option('--json', 'print JSON')
    .action(async (o: { config?: string; stateDir?: string; json?: boolean }) => setExit(await (await import('./status.js')).statusCommand(o, io)));

  const audit = program.command('audit').description('the audit log: every deny and the audited allows (docs/audit.md)');
  const auditSource = (c: Command): Command =>
    c
      .option('-c, --config <file>', 'the agent\'s configuration, for its state directory (default: the embedded defaults)')
      .option('--state-dir <dir>', 'the agent\'s state directory (overrides the configuration)');
  const auditFilters = (c: Command): Command =>
    c
      .option('--principal <id>', 'only this principal (repeatable; * matches any characters: pump-*)', collect)
      .option('--client-id <id>', 'only this MQTT client id (repeatable; * matches any characters)', collect)
      .option('--thing <id>', 'only this thing (repeatable; * matches any characters)', collect)
      .option('--decision <d>', 'allow, deny or lost (repeatable or a comma list)', collect)
      .option('--reason <code>', 'only these reason codes, e.g. NOT_GRANTED (repeatable or a comma list; docs/reasons.md)', collect)
      .option('--action <a>', 'a permission (EXECUTE_THING_COMMAND) or publish, subscribe, unsubscribe, connect, audit (repeatable or a comma list)', collect)
      .option('--since <time>', 'from this time: ISO 8601 with a zone, a date (UTC), or a time ago: 30s, 10m, 2h, 1d, 1w')
      .option('--until <time>', 'before this time (same forms as --since)');
  auditFilters(
    auditSource(
      audit
        .command('tail')
        .description('the newest audit records (that match the filters); with --follow, then new ones as the agent writes them, until Ctrl-C')
        .option('-n, --lines <n>', 'how many (the last N that match)', '20')
        .option('-f, --follow', 'keep printing records as they are written, across rotations, until Ctrl-C or SIGTERM')
        .option('--json', 'one JSON object per line'),
    ),
  ).action(async (o: AuditTailOptions) => setExit(await (await import('./audit.js')).auditTailCommand(o, io)));
  auditFilters(
    auditSource(
      audit
        .command('stats')
        .description('counts of the records (that match the filters) over a window, by reason and principal or --by')
        .option('--by <key>', 'group by reason, principal, action, thing, decision or client-id (repeatable or a comma list; default: reason,principal)', collect)
        .option('--json', 'one JSON object'),
    ),
  ).action(async (o: AuditStatsOptions) => setExit(await (await import('./audit.js')).auditStatsCommand(o, io)));

  program
    .command('explain')
    .description('why a principal may or may not do something, from the snapshot in force of the installed agent (or -s FILE); exit 0 allow, 3 deny')
    .option('-p, --principal <id>', 'user, API key, application, device or gateway id')
    .option('-P, --permission <name>', 'permission API name (see `edgewarden catalog`)')
    .option('--thing <id>', 'the thing acted on (with -P)')
    .option('--topic <topic>', 'an MQTT topic (or, with --subscribe, a filter): what the broker decides for it')
    .option('--publish', 'with --topic: a PUBLISH on the topic (the default)')
    .option('--subscribe', 'with --topic: a SUBSCRIBE to the filter')
    .option('--client-id <id>', 'a client connected to the running agent: shows it, and explains for its principal')
    .option('-c, --config <file>', 'the agent\'s configuration (default: the embedded defaults), for its state directory, trusted keys, topic map and rules')
    .option('--state-dir <dir>', 'the agent\'s state directory (overrides the configuration)')
    .option('-s, --snapshot <file>', 'answer from this snapshot file instead of the installed one')
    .option('-t, --trust <key>', 'with -s: trusted public key (repeatable; default: the demo key)', collect)
    .option('--at <iso>', 'decide as of this time (default: the agent\'s time floor; with -s, now)')
    .option('--expired-mode <mode>', 'read-only, deny-all or enforce (default: the configuration\'s snapshot.expiredMode)')
    .option('--json', 'print JSON')
    .action(async (o: Parameters<typeof explainCommand>[0]) => setExit(await (await import('./explain.js')).explainCommand(o, io)));

  return program;
}

export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  let code = 0;
  const program = buildProgram(io, (c) => (code = c));
  program.exitOverride();
  for (const c of program.commands) {
    c.exitOverride();
    for (const s of c.commands) s.exitOverride();
  }
  try {
    await program.parseAsync(argv as string[], { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof EwError) {
      io.err(`edgewarden: ${err.describe()}`);
      return err.code === 'EW_USAGE' ? 2 : 1;
    }
    io.err(`edgewarden: unexpected error: ${(err as Error)?.stack ?? String(err)}`);
    return 1;
  }
}
