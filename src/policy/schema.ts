// The policy file the cloud team writes, and the snapshot payload made from it, as TypeBox schemas.
// TypeBox values are JSON Schema: docs/policy.schema.json is written from `POLICY_FILE_SCHEMA`
// (`edgewarden policy schema`), and a test fails if the committed copy drifts. The validators are
// compiled from these schemas at build time (scripts/gen-validators.mjs, src/generated/): the agent
// and the CLI import only types from here, never TypeBox at run time.
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { ID_PATTERN } from './ids.js';
const Id = (description: string) => Type.String({ minLength: 1, maxLength: 128, pattern: ID_PATTERN, description });
const Ids = (description: string) => Type.Array(Id(description), { description });
const Hash = (description: string) => Type.String({ description });
const Hashes = (description: string) => Type.Array(Hash(description), { description });
const Name = Type.Optional(Type.String({ maxLength: 256, description: 'display name' }));
const Revoked = Type.Optional(Type.Boolean({ description: 'true: the principal is kept but refused (REVOKED)' }));

export const UserTypeSchema = Type.Union(
  [Type.Literal('ORGANIZATION'), Type.Literal('PARTNER'), Type.Literal('CUSTOMER')],
  { description: 'Servitly user type' },
);
export const ModuleIdSchema = Type.Union(
  [Type.Literal('CONNECTED_FIELD_SERVICE'), Type.Literal('VALUE_ADDED_DIGITAL_SERVICES'), Type.Literal('SPARE_PARTS_AND_CONSUMABLES')],
  { description: 'subscription module' },
);
export const GatewayRoleSchema = Type.Union([Type.Literal('standard'), Type.Literal('privileged')], {
  description: 'IBM gateway role: standard serves only its resource groups; privileged serves every thing and may register things',
});
export const IbmApplicationRoleSchema = Type.Union(
  [
    Type.Literal('standard'),
    Type.Literal('operations'),
    Type.Literal('backend-trusted'),
    Type.Literal('data-processor'),
    Type.Literal('visualization'),
    Type.Literal('device'),
  ],
  { description: 'IBM application role this application was modelled on (informative)' },
);

const O = <T extends Record<string, TSchema>>(props: T, description: string) =>
  Type.Object(props, { additionalProperties: false, description });

export const GatewaySchema = O(
  {
    id: Id('this gateway\'s id; a snapshot is accepted only by the gateway it names'),
    role: GatewayRoleSchema,
    resourceGroups: Ids('resource groups this gateway serves (IBM)'),
  },
  'the gateway the snapshot is for',
);

export const ThingSchema = O(
  {
    id: Id('thing id; also its MQTT username and the {thing} of its topics'),
    name: Name,
    customer: Id('customer the thing belongs to'),
    location: Type.Optional(Id('location of the thing (of the same customer)')),
    resourceGroup: Id('resource group of the thing'),
    tokenHashes: Type.Optional(Hashes('connection token hashes (sha256:...)')),
    certFingerprints: Type.Optional(Hashes('client certificate fingerprints (sha256:... of the DER)')),
    revoked: Revoked,
  },
  'a thing (device) and its own credentials',
);

export const RoleSchema = O(
  {
    name: Id('role name; admin and none are built in'),
    userType: UserTypeSchema,
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    permissions: Type.Array(Type.String({ maxLength: 128 }), { description: 'API names from the catalog' }),
  },
  'a custom role: a named permission set for one user type',
);

export const UserSchema = O(
  {
    id: Id('user id; also the MQTT username'),
    name: Name,
    userType: UserTypeSchema,
    entity: Id('id of the organization, partner or customer the user belongs to'),
    role: Type.Optional(Id('exactly one role; absent means the built-in role none')),
    passwordHash: Type.Optional(Hash('password hash (scrypt:...)')),
    tokenHashes: Type.Optional(Hashes('personal access token hashes (sha256:...)')),
    revoked: Revoked,
  },
  'a user (person)',
);

export const ApiKeySchema = O(
  {
    id: Id('API key id; also the MQTT username'),
    name: Name,
    userType: UserTypeSchema,
    entity: Id('id of the organization, partner or customer that owns the key'),
    permissions: Type.Array(Type.String({ maxLength: 128 }), { description: 'the key\'s own permission set' }),
    secretHash: Hash('secret hash (sha256:...)'),
    revoked: Revoked,
  },
  'an API key: belongs to an entity and carries its own permission set',
);

export const ApplicationSchema = O(
  {
    id: Id('application id; also the MQTT username'),
    name: Name,
    ibmRole: Type.Optional(IbmApplicationRoleSchema),
    role: Id('an ORGANIZATION role (see config/templates/ibm-roles.yaml for the IBM application roles)'),
    secretHash: Hash('secret hash (sha256:...)'),
    revoked: Revoked,
  },
  'an application of the organization',
);

export const UserAuthorizationSchema = O(
  {
    customer: Id('customer'),
    user: Id('a CUSTOMER user of that customer'),
    things: Ids('things of that customer the user is authorized on'),
  },
  'once a customer has user authorizations, its users act only on the things authorized to them',
);

export const OrganizationAuthorizationSchema = O(
  {
    user: Id('an ORGANIZATION user'),
    customers: Type.Optional(Ids('customers')),
    locations: Type.Optional(Ids('locations')),
    things: Type.Optional(Ids('things')),
  },
  'narrows an ORGANIZATION user to the union of the listed customers, locations and things',
);

const bodyProps = {
  formatVersion: Type.Literal(1, { description: 'policy/snapshot format version' }),
  tenant: Id('tenant (the manufacturer\'s Servitly tenant)'),
  gateway: GatewaySchema,
  modules: Type.Array(ModuleIdSchema, { description: 'active subscription modules' }),
  organization: O({ id: Id('organization id'), name: Name }, 'the ORGANIZATION (manufacturer)'),
  partners: Type.Optional(
    Type.Array(O({ id: Id('partner id'), name: Name, customers: Ids('customers assigned to this partner') }, 'a partner')),
  ),
  customers: Type.Optional(Type.Array(O({ id: Id('customer id'), name: Name }, 'a customer'))),
  locations: Type.Optional(Type.Array(O({ id: Id('location id'), name: Name, customer: Id('customer') }, 'a location'))),
  things: Type.Optional(Type.Array(ThingSchema)),
  roles: Type.Optional(Type.Array(RoleSchema)),
  users: Type.Optional(Type.Array(UserSchema)),
  apiKeys: Type.Optional(Type.Array(ApiKeySchema)),
  applications: Type.Optional(Type.Array(ApplicationSchema)),
  userAuthorizations: Type.Optional(Type.Array(UserAuthorizationSchema)),
  organizationAuthorizations: Type.Optional(Type.Array(OrganizationAuthorizationSchema)),
};

export const ValiditySchema = O(
  {
    expiresAt: Type.Optional(Type.String({ description: 'absolute expiry, ISO 8601 with a zone (2027-01-31T00:00:00Z)' })),
    validFor: Type.Optional(
      Type.String({ pattern: '^[1-9][0-9]*(m|h|d)$', description: 'expiry relative to signing time: 90m, 12h, 30d' }),
    ),
  },
  'how long the signed snapshot is valid: exactly one of expiresAt or validFor',
);

export const POLICY_FILE_SCHEMA = Type.Object(
  { ...bodyProps, validity: ValiditySchema },
  {
    additionalProperties: false,
    $id: 'https://edgewarden.dev/schema/policy.json',
    title: 'edgewarden policy file',
    description: 'The human-written policy that `edgewarden snapshot sign` turns into a signed snapshot.',
  },
);

export const SNAPSHOT_PAYLOAD_SCHEMA = Type.Object(
  {
    ...bodyProps,
    version: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'strictly increasing per gateway' }),
    issuedAt: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'ms since the epoch' }),
    expiresAt: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'ms since the epoch' }),
  },
  { additionalProperties: false, title: 'edgewarden snapshot payload' },
);

export type PolicyFile = Static<typeof POLICY_FILE_SCHEMA>;
export type SnapshotPayload = Static<typeof SNAPSHOT_PAYLOAD_SCHEMA>;
export type PolicyBody = Omit<PolicyFile, 'validity'>;
export type Thing = Static<typeof ThingSchema>;
export type User = Static<typeof UserSchema>;
export type Role = Static<typeof RoleSchema>;
export type ApiKey = Static<typeof ApiKeySchema>;
export type Application = Static<typeof ApplicationSchema>;
