// The topics layer: MQTT topics and topic filters -> what the decision engine needs. Pure (no I/O,
// no clock, no logger); it knows the permission catalog and nothing of sockets or aedes.
//
//   ./filters.ts      MQTT names and filters: isValidTopicName, isValidTopicFilter, topicMatches,
//                     filterCoveredBy, filterCoveredByAny, filtersIntersect, someTopicMatches
//   ./topic-map.ts    the thing topic map of SPEC section 3: compileTopicMap, fanOutTopic
//   ./topic-rules.ts  mosquitto-style topic rules for the topics outside the map: compileTopicRules
//
// How the broker uses it (one call per hook; it caches one answer per topic or filter):
//
//   const map = compileTopicMap({ enabled: config.topics.thingMap });  // root 'things', bulkRoot 'bulk'
//   const rules = compileTopicRules(config.topics.rules);
//
//   authorizePublish: map.routePublish(topic) ->
//     { kind: 'action', permission, permissionId, thing, name }  decide(principal, permission, thing)
//     { kind: 'bulk', permissionId, operation }                 decide EXECUTE_BULK_UPDATE, then publish
//                                                               map.fanOutTopic(t, operation) per thing
//     { kind: 'device-own', thing }                             only the device `thing` itself
//     { kind: 'agent-only', thing }                             refused for every client
//     { kind: 'outside' }                                       rules.canPublish(topic, who)
//   authorizeForward: map.routeDelivery(topic) ->
//     { kind: 'read', permission, permissionId, thing, ownerMayReceive, action }
//                                                               decide(subscriber, permission, thing),
//                                                               or the device `thing` if ownerMayReceive
//     { kind: 'inbox', thing, action }                          only the device `thing` itself
//     (action: the permission its sender needed, or null: an action message is decided again at
//     each delivery for its sender, see src/broker/actions.ts)
//     { kind: 'nobody' }                                        no client (a bulk request)
//     { kind: 'outside' }                                       rules.canReceive(topic, who)
//   authorizeSubscribe: map.routeSubscription(filter) -> { reads, inbox, outside }: which kinds of
//     topics the filter can match, each with its {thing} level (a literal, or null = any thing).
//     Grant it when at least one part is receivable (a read the subscriber may hold for that thing,
//     or for some thing when null; its own inbox for a device; `outside && rules.canSubscribe`),
//     else refuse it (SUBACK 0x80). All parts empty (e.g. `bulk/#`, or an invalid filter): refuse.
//
// Semantic choices are written at the top of each file; the main ones:
// - placeholders ({thing}, {name}, {id}, {operation}) are MQTT `+`: one level, possibly empty;
// - `things/{t}/telemetry/...` and `alerts/...` need at least one more level;
// - the fan-out topic `things/{t}/bulk/{op}` is agent-only to publish, inbox of t to deliver;
//   the bulk request `bulk/{op}` is delivered to nobody;
// - `$` topics and filters, and everything when the map is disabled, are outside the map;
// - topic rules: deny wins, default deny; a subscription is granted when its filter can match at
//   least one topic the client may receive, and each message is then filtered with canReceive.
export {
  isValidTopicName,
  isValidTopicFilter,
  isDollarTopic,
  topicMatches,
  matchesValid,
  filterCoveredBy,
  filterCoveredByAny,
  filtersIntersect,
  someTopicMatches,
} from './filters.js';
export {
  compileTopicMap,
  checkTopicMapOptions,
  topicRootProblem,
  fanOutTopic,
  THING_TOPICS,
  type ThingTopic,
  type TopicMap,
  type TopicMapOptions,
  type PublishRoute,
  type DeliveryRoute,
  type ActionRef,
  type SubscriptionRoute,
  type SubscriptionRead,
  type ThingActionPermission,
  type ReadPermission,
} from './topic-map.js';
export { compileTopicRules, checkTopicRules, type TopicRules, type TopicRule, type TopicAccess, type RuleSubject } from './topic-rules.js';
