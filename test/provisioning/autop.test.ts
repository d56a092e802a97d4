import t from 'tap';
import { MAX_AUTOP_LINES, mergeAutop, parseAutop } from '../../src/provisioning/autop.js';
import { renderConfig } from '../../src/provisioning/config-renderer.js';

t.test('Autop lines in the vendor style are parsed; blank lines and comments are skipped', async (t) => {
  const parsed = parseAutop('Config.DoorSetting.RTSP.Enable = 1\r\n\r\n# a comment\nConfig.Account1.GENERAL.UserName=5926100061\n  Config.X_Y.z_1 =  spaced value  ');
  t.same(parsed.lines, [
    { key: 'Config.DoorSetting.RTSP.Enable', value: '1' },
    { key: 'Config.Account1.GENERAL.UserName', value: '5926100061' },
    { key: 'Config.X_Y.z_1', value: 'spaced value' },
  ]);
  t.same(parsed.dropped, []);
  t.same(parseAutop(['Config.A = ', 'Config.B = x=y']).lines, [
    { key: 'Config.A', value: '' },
    { key: 'Config.B', value: 'x=y' },
  ]);
});

t.test('duplicate commands are not retained, and the answer says what was dropped', async (t) => {
  const parsed = parseAutop(['Config.A = 1', 'Config.B = 1', 'Config.A = 1', 'Config.B = 2', 'Config.B = 3']);
  t.same(parsed.lines, [
    { key: 'Config.A', value: '1' },
    { key: 'Config.B', value: '3' },
  ]);
  t.same(parsed.dropped, [
    { line: 2, text: 'Config.B = 1', reason: 'same key as line 4, which is kept' },
    { line: 3, text: 'Config.A = 1', reason: 'duplicate of an earlier line' },
    { line: 4, text: 'Config.B = 2', reason: 'same key as line 5, which is kept' },
  ]);
});

t.test('invalid lines are refused together, by line number', async (t) => {
  try {
    parseAutop(['Config.Ok = 1', 'no equals sign', '1Config = 2', 'Config.A-B = 3', `Config.Long = ${'x'.repeat(513)}`, `${'K'.repeat(129)} = 1`, 'Config.Ctl = a\u0007b']);
    t.fail('should throw');
  } catch (err: any) {
    t.equal(err.kind, 'invalid');
    t.equal(err.code, 'invalid_autop');
    t.same(
      err.details.lines.map((l: any) => l.line),
      [2, 3, 4, 5, 6, 7],
    );
  }
  t.throws(() => parseAutop(Array.from({ length: MAX_AUTOP_LINES + 1 }, (_, i) => `Config.K${i} = 1`)), { code: 'too_many_lines' });
  t.throws(() => parseAutop('\n# only a comment\n'), { code: 'no_commands' });
  t.throws(() => parseAutop(['Config.A = 1\nConfig.B = 2']), { code: 'invalid_autop' }, 'an array element may not hide a second line');
});

t.test('batch lines override same-key lines and keep the others', async (t) => {
  t.same(
    mergeAutop(
      [
        { key: 'A', value: '1' },
        { key: 'B', value: '1' },
      ],
      [{ key: 'B', value: '2' }],
    ),
    [
      { key: 'A', value: '1' },
      { key: 'B', value: '2' },
    ],
  );
});

t.test('the effective configuration is deterministic and its hash follows every input', async (t) => {
  const source = {
    mac: '0C11050B9814',
    name: 'Gate 1',
    location: 'North\nentrance',
    networkGroup: 2,
    relays: [{ name: 'Door', dtmf: '#', enabled: true, accessMethods: ['homepage' as const, 'pin' as const] }],
    sipNumber: '5926100061',
    sipPassword: 'secret',
    connectType: 'tcp' as const,
    regularAutop: [{ key: 'Config.A', value: '1' }],
    directory: null,
  };
  const a = renderConfig(source);
  t.same(renderConfig(source), a, 'same input, same bytes and hash');
  t.match(a.text, /Config\.Account1\.SIP\.TransType = 1\n/);
  t.match(a.text, /Config\.DoorSetting\.DEVICENODE\.Location = North entrance\n/, 'values never break lines');
  t.match(a.text, /# Regular Autop\nConfig\.A = 1\n$/, 'regular Autop last; one-time Autop is never part of it');
  t.not(renderConfig({ ...source, regularAutop: [] }).hash, a.hash);
  t.not(renderConfig({ ...source, connectType: 'udp' }).hash, a.hash);
  t.not(renderConfig({ ...source, relays: [] }).hash, a.hash);
  const placed = renderConfig({ ...source, directory: { timeZone: 'Europe/Berlin', documents: [{ name: 'contacts', sha256: 'ab'.repeat(32), size: 10, url: 'http://h/documents/x' }] } });
  t.not(placed.hash, a.hash, 'what the directory gives is part of the configuration');
  t.ok(placed.text.indexOf('Config.Settings.DATETIME.TimeZone = Europe/Berlin') < placed.text.indexOf('# Regular Autop'), 'regular Autop comes after the directory, so it can override it');
  t.match(placed.text, /Config\.Directory\.CONTACTS\.Sha256 = (ab){32}\n/);
});
