import t from 'tap';
import { renderConfig, type ConfigSource } from '../../src/provisioning/config-renderer.js';
import { parseConfigLines } from '../../simulators/device-config.js';

// The configuration's line rule (docs/device-protocol.md, "Configuration lines"), from the cloud's side:
// what the renderer writes is exactly what a device reading by that rule gets.

const source: ConfigSource = {
  mac: '0C11050B9814',
  // A record written before names were trimmed at the boundary.
  name: '  Gate\tnorth  ',
  location: null,
  networkGroup: 0,
  relays: [{ name: ' Main door ', dtmf: '#', enabled: true, accessMethods: ['pin'] }],
  sipNumber: '5926100061',
  sipPassword: 'p4ss',
  connectType: 'udp',
  sipServer: { host: '203.0.113.10', port: 5060, domain: '203.0.113.10' },
  regularAutop: [
    { key: 'Config.Inline.Comment', value: '0   # 0 UDP' },
    { key: 'Config.Empty.Key', value: '' },
  ],
  directory: null,
};

t.test('every rendered line is a whole-line comment or Key = Value with the value exactly as a device reads it', async (t) => {
  const { text } = renderConfig(source);
  for (const line of text.split('\n').filter(Boolean)) {
    if (line.startsWith('#')) continue;
    const [parsed] = parseConfigLines(line);
    t.ok(parsed, `a setting: ${line}`);
    t.equal(line.replace(/ $/, ''), parsed!.value === '' ? `${parsed!.key} =` : `${parsed!.key} = ${parsed!.value}`, `no blank around the value: ${JSON.stringify(line)}`);
  }
  const read = new Map(parseConfigLines(text).map((l) => [l.key, l.value]));
  t.equal(read.get('Config.Account1.GENERAL.DisplayName'), 'Gate north', 'a stored name with blanks and a tab reads back trimmed');
  t.equal(read.get('Config.DoorSetting.RELAY.Name1'), 'Main door');
  t.equal(read.get('Config.DoorSetting.RELAY.DTMF1'), '#', 'a # value is literal, not a comment');
  t.equal(read.get('Config.Inline.Comment'), '0   # 0 UDP', 'no inline comments: the value runs to the end of the line');
  t.equal(read.get('Config.DoorSetting.DEVICENODE.Location'), '', 'no location: an empty value, which unsets the key');
  t.equal(read.get('Config.Empty.Key'), '');
});

t.test('a device reads lines by one rule', async (t) => {
  const text = ['# comment', '   # indented comment = not a key', '', 'A.B = 1', '\tC.D=  x = y  ', 'no equals sign', '= no key', 'E.F = #', 'G.H =', 'A.B = 2\r', ''].join('\n');
  t.same(parseConfigLines(text), [
    { key: 'A.B', value: '1' },
    { key: 'C.D', value: 'x = y' },
    { key: 'E.F', value: '#' },
    { key: 'G.H', value: '' },
    { key: 'A.B', value: '2' },
  ]);
});
