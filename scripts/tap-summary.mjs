// Reads a TAP stream (tap -R tap) on stdin, echoes it, and ends with "N passed, N failed".
// Counts assertions (leaf test points); a subtest that failed without a failing assertion inside it
// (a crash, a timeout) counts as one failure.
import { createInterface } from 'node:readline';

const exitCode = Number(process.argv[2] ?? 0);
let passed = 0;
let failed = 0;
let skipped = 0;
const open = []; // subtests awaiting their result line: { indent, failedAtStart }

for await (const line of createInterface({ input: process.stdin })) {
  process.stdout.write(`${line}\n`);
  const subtest = /^(\s*)# Subtest: /.exec(line);
  if (subtest) {
    open.push({ indent: subtest[1].length, failedAtStart: failed });
    continue;
  }
  const point = /^(\s*)(not ok|ok)\b.*?(#\s*(SKIP|TODO)\b)?/i.exec(line);
  if (!point) continue;
  const indent = point[1].length;
  const ok = point[2] === 'ok';
  const top = open[open.length - 1];
  if (top && top.indent === indent) {
    open.pop();
    if (!ok && failed === top.failedAtStart) failed++;
    continue;
  }
  if (point[4]) skipped++;
  else if (ok) passed++;
  else failed++;
}
if (exitCode !== 0 && failed === 0) failed = 1; // the runner failed before or outside any test point
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
