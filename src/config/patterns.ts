// The configuration schema's patterns and their readable reasons, apart from the schema: the agent
// explains a failed pattern without loading TypeBox (its validator is generated at build time).
import { ID_PATTERN } from '../policy/ids.js';

/** An MQTT topic filter: `+` and `#` only as whole levels, `#` only as the last level [MQTT-4.7.1-2, 4.7.1-3]. */
export const TOPIC_FILTER_PATTERN = '^(?:(?:\\+|[^+#/\\u0000]*)/)*(?:\\+|#|[^+#/\\u0000]*)$';
const ID_BODY = ID_PATTERN.slice(1, -1);
/** Who a topic rule applies to. */
export const WHO_PATTERN = `^(?:anonymous|authenticated|principal:${ID_BODY}|role:${ID_BODY})$`;

/** The cloud broker's URL: scheme and host[:port] only; credentials never in it (they would show in logs and the status). */
export const CLOUD_URL_PATTERN = '^(mqtt|mqtts)://[^/?#@]+$';

/** Readable reasons for the schema's patterns (Ajv would say "must match pattern ..."). */
export const PATTERN_REASONS: Readonly<Record<string, string>> = {
  [TOPIC_FILTER_PATTERN]: 'is not a valid MQTT topic filter (+ and # only as whole levels, # only as the last level)',
  [WHO_PATTERN]: 'must be anonymous, authenticated, principal:<id> or role:<name>',
  [ID_PATTERN]: 'is not a valid id (letters, digits and . _ : @ -, starting with a letter or digit)',
  [CLOUD_URL_PATTERN]: 'must be mqtt://host:port or mqtts://host:port, with no user or password in it (use cloud.username and cloud.passwordFile)',
};
