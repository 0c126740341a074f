/** The progress bar (core/progress.ts) fits the terminal's width. */
import assert from "node:assert/strict";
import { Progress, progressLine, terminalColumns } from "../core/progress.ts";

const TERMS = { loss: 1.2345, sup: 0.5, mi: -0.2, kl: 0.01 };

Deno.test("progress: on a terminal of any width each update redraws one row that fits", () => {
  for (const columns of [200, 100, 80, 60, 40, 24]) {
    let out = "";
    const p = new Progress(500, { tty: true, columns: () => columns, write: (t) => (out += t) });
    for (let i = 1; i <= 30; i++) p.update(i, TERMS);
    // no update ended a line: each redraw starts with \r on the same row
    assert.equal(out.includes("\n"), false, `${columns} columns: ${JSON.stringify(out)}`);
    const rows = out.split("\r").filter((r) => r !== "");
    assert.equal(rows.length, 30);
    for (const row of rows) {
      assert.ok(row.length <= columns - 1, `${columns} columns: ${row.length} > ${columns - 1}`);
      assert.match(row, /\d+\/500/, "iterations done are always shown");
    }
    p.done();
    assert.ok(out.endsWith("\n"));
  }
});

Deno.test("progress: the least important fields go first", () => {
  const line = (columns: number) => progressLine(37, 500, TERMS, 3.21, 145, columns);
  assert.match(
    line(200),
    /^\[#-+\] 37\/500 loss 1\.2345 sup 0\.5000 mi -0\.2000 kl 0\.0100 \| 3\.21 it\/s ETA 2m25s$/,
  );
  assert.equal(
    line(80),
    "37/500 loss 1.2345 sup 0.5000 mi -0.2000 kl 0.0100 | 3.21 it/s ETA 2m25s",
  );
  assert.equal(line(60), "37/500 loss 1.2345 sup 0.5000 | 3.21 it/s ETA 2m25s");
  assert.equal(line(40), "37/500 loss 1.2345 | ETA 2m25s");
  assert.equal(line(20), "37/500 | ETA 2m25s");
  assert.equal(line(10), "37/500 | ");
});

Deno.test("progress: a log (no terminal) gets whole lines; the width falls back to 80", () => {
  let out = "";
  const p = new Progress(20, {
    tty: false,
    every: 10,
    columns: () => 30,
    write: (t) => (out += t),
  });
  for (let i = 1; i <= 20; i++) p.update(i, TERMS);
  const lines = out.trim().split("\n");
  assert.equal(lines.length, 2);
  assert.match(lines[1], /20\/20 loss .* kl 0\.0100 \|/);
  // the test runner's standard error is a pipe, not a terminal
  if (!Deno.stderr.isTerminal()) assert.equal(terminalColumns(), 80);
});
