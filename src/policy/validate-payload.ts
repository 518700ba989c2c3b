// The agent's check of a decoded snapshot payload: structure (validators generated at build time
// from SNAPSHOT_PAYLOAD_SCHEMA), then the issuer's invariants. Apart from validate.ts so the agent
// loads neither the policy file's validator nor the YAML parser to check a snapshot.
import type { ValidateFunction } from 'ajv';
import type { Issue } from '../errors.js';
import type { PolicyBody } from './schema.js';
import { checkSemantics, UNSALTED_PASSWORD } from './semantics.js';
import { ajvIssues } from './issues.js';
import { validatePayloadFull } from '../generated/payload-validator.js';
import { validatePayloadFast } from '../generated/payload-fast-validator.js';

// The payload's validators stop at the first problem (the gateway checks every snapshot it loads;
// the signer already reported every problem of the policy). The first check has no error detail and
// counts string lengths in UTF-16 code units, 4x faster on 100,000 things: it accepts only payloads
// the full one accepts, so when it fails the full one decides and explains.
const fastPayloadValidate = validatePayloadFast as ValidateFunction;
const payloadValidate = validatePayloadFull as ValidateFunction;

/**
 * Check of a decoded snapshot payload (the agent's side): its structure, then every invariant the
 * issuer checks (defence in depth: the same checkSemantics). A role that is not defined is an error
 * here, where the issuer only warns: the issuer writes such a user's role as none, so a payload that
 * names an undefined role was not written by it.
 */
export function validatePayload(raw: unknown): Issue[] {
  if (!fastPayloadValidate(raw)) {
    if (!payloadValidate(raw)) return ajvIssues(payloadValidate.errors);
  }
  const issues: Issue[] = [];
  const warnings: Issue[] = [];
  checkSemantics(raw as PolicyBody, issues, warnings);
  for (const w of warnings) if (/\.role$/.test(w.path)) issues.push(w);
  // A user's sha256 password, which the issuer refuses, does not make the gateway refuse the whole
  // snapshot (a gateway upgraded while holding an older one would deny everyone until the next):
  // the index never accepts it (the user cannot log in with a password) and warns.
  return issues.filter((i) => i.message !== UNSALTED_PASSWORD);
}
