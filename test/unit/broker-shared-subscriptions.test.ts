// `$share/{ShareName}/{filter}` parsed per MQTT 5 4.8.2, and the marker aedes holds for it
// (src/broker/shared-subscriptions.ts). Behaviour: test/integration/shared-subscriptions.test.ts.
import t from 'tap';
import { SHARE_MARKER, displayFilter, parseMarker, parseShared } from '../../src/broker/shared-subscriptions.js';

t.test('well-formed shared filters', async (t) => {
  t.same(parseShared('$share/g/things/+/telemetry/#'), { share: 'g', filter: 'things/+/telemetry/#', marker: `${SHARE_MARKER}g/things/+/telemetry/#` });
  t.same(parseShared('$share/group-1/#'), { share: 'group-1', filter: '#', marker: `${SHARE_MARKER}group-1/#` });
  t.same(parseShared('$share/g//a'), { share: 'g', filter: '/a', marker: `${SHARE_MARKER}g//a` }, 'a filter may start with an empty level');
  t.equal(parseShared('things/a'), null, 'not shared');
  t.equal(parseShared('$SYS/x'), null);
  t.equal(parseShared('$sharex/g/a'), null, 'only the exact prefix');
});

t.test('malformed: [MQTT-4.8.2-1] [MQTT-4.8.2-2]', async (t) => {
  for (const f of ['$share/', '$share//a', '$share/g', '$share/g/', '$share/+/a', '$share/#/a', '$share/a+b/x', '$share/a#/x']) t.equal(parseShared(f), 'malformed', f);
});

t.test('markers round-trip; a marker is shown as the client subscribed', async (t) => {
  const s = parseShared('$share/g/a/b') as { marker: string };
  t.same(parseMarker(s.marker), { share: 'g', filter: 'a/b', marker: s.marker });
  t.equal(parseMarker('$share/g/a/b'), null, 'a $share filter is not a marker');
  t.equal(parseMarker(`${SHARE_MARKER}g`), null, 'a malformed marker is none');
  t.equal(displayFilter(s.marker), '$share/g/a/b');
  t.equal(displayFilter('a/b'), 'a/b');
});
