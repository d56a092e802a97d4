import { isIP } from 'node:net';
import { z } from 'zod';
import { macInput } from '../mac-library/mac.js';
import { singleLine } from '../shared/text.js';

// The site settings an IXGW-(T)GW gateway uploads for its IXG system (docs/device-protocol.md, "IXG sites";
// seed 000 "Upload Settings to IXG Cloud Server"): the Support Tool's lists, as the portal shows them.

const name = singleLine(64, 1);
const ip = z
  .string()
  .max(45)
  .refine((v) => isIP(v) !== 0, 'an IPv4 or IPv6 address')
  .nullable();
/** Station and app numbers: the IXG system's own numbering (digits, unique in the system). */
const stationNumber = z.string().regex(/^[0-9]{1,8}$/, '1 to 8 digits');

export const MAX_UNITS = 10_000;
export const MAX_STATIONS = 20_000;
export const MAX_APPS_PER_UNIT = 8;

const unitSchema = z.strictObject({
  /** What a visitor dials: the apartment number of the mirrored unit. Door stations sit in entrance units. */
  number: z.string().regex(/^[0-9]{1,6}$/, 'a unit number: 1 to 6 digits'),
  name,
  type: z.enum(['residential', 'entrance', 'commercial']),
  stations: z.array(z.strictObject({ number: stationNumber, name, type: singleLine(32, 1), ip })).max(64),
  apps: z
    .array(
      z.strictObject({
        number: stationNumber,
        name,
        addressBook: z.array(z.strictObject({ station: stationNumber, doorRelease: z.boolean() })).max(500),
      }),
    )
    .max(MAX_APPS_PER_UNIT),
});

export const ixgSiteDocument = z
  .strictObject({
    format: z.literal(1),
    site: z.strictObject({ id: singleLine(32, 1), name: singleLine(128, 1) }),
    gateways: z.array(z.strictObject({ number: stationNumber, name, ip, mac: macInput })).min(1).max(16),
    buildings: z
      .array(z.strictObject({ number: z.string().regex(/^[0-9]{1,3}$/, 'a building number: 1 to 3 digits'), name, units: z.array(unitSchema).max(MAX_UNITS) }))
      .max(100),
  })
  .superRefine((doc, ctx) => {
    const fault = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    const units = doc.buildings.reduce((n, b) => n + b.units.length, 0);
    if (units > MAX_UNITS) fault(['buildings'], `at most ${MAX_UNITS} units`);
    const stations = new Map<string, (string | number)[]>();
    const see = (number: string, path: (string | number)[]) => {
      if (stations.has(number)) fault(path, `station number ${number} is used twice`);
      stations.set(number, path);
    };
    const buildingNumbers = new Set<string>();
    doc.buildings.forEach((b, bi) => {
      if (buildingNumbers.has(b.number)) fault(['buildings', bi, 'number'], `building number ${b.number} is used twice`);
      if (doc.buildings.findIndex((o) => o.name === b.name) !== bi) fault(['buildings', bi, 'name'], `building name ${b.name} is used twice`);
      buildingNumbers.add(b.number);
      const unitNumbers = new Set<string>();
      b.units.forEach((u, ui) => {
        if (unitNumbers.has(u.number)) fault(['buildings', bi, 'units', ui, 'number'], `unit number ${u.number} is used twice in building ${b.number}`);
        unitNumbers.add(u.number);
        u.stations.forEach((s, si) => see(s.number, ['buildings', bi, 'units', ui, 'stations', si, 'number']));
        u.apps.forEach((a, ai) => see(a.number, ['buildings', bi, 'units', ui, 'apps', ai, 'number']));
      });
    });
    if (stations.size > MAX_STATIONS) fault(['buildings'], `at most ${MAX_STATIONS} stations and apps`);
    doc.buildings.forEach((b, bi) =>
      b.units.forEach((u, ui) =>
        u.apps.forEach((a, ai) =>
          a.addressBook.forEach((entry, ei) => {
            if (!stations.has(entry.station)) fault(['buildings', bi, 'units', ui, 'apps', ai, 'addressBook', ei, 'station'], `no station ${entry.station} in the upload`);
          }),
        ),
      ),
    );
  });
export type IxgSiteDocument = z.infer<typeof ixgSiteDocument>;
