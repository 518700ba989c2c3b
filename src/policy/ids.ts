// The id syntax shared by policies, snapshots and the configuration, apart from the schemas: the
// agent's run path matches ids without loading TypeBox (the validators are generated at build time).
/** Ids of things, users, roles, principals: letters, digits and . _ : @ -, starting with a letter or digit. */
export const ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:@-]*$';
