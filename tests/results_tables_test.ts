/**
 * The result tables the README and docs/ show are the output of `deno task table` on the
 * committed runs in results/, pasted between `<!-- table: <command> -->` and `<!-- /table -->`.
 * This regenerates each of them and fails when the document differs (`deno task tables:update`
 * rewrites them). Without any marker it passes vacuously; the mechanism itself is tested on a
 * synthetic results tree in a temporary folder.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  documentFiles,
  findTableBlocks,
  normalizeTableText,
  parseTableCommand,
  renderTableCommand,
  REPO_ROOT,
  staleTables,
  updateTables,
} from "../app/doc_tables.ts";

Deno.test("every table in README.md and docs/ is what its deno task table command prints", async () => {
  let blocks = 0;
  const stale: string[] = [];
  for (const file of await documentFiles()) {
    let text: string;
    try {
      text = await Deno.readTextFile(join(REPO_ROOT, file));
    } catch {
      continue;
    }
    blocks += findTableBlocks(text, file).length;
    for (const s of await staleTables(text, file)) {
      stale.push(
        `${s.file}:${s.line} (${s.command}) differs; the command prints:\n${s.expected}\n`,
      );
    }
  }
  if (blocks === 0) {
    console.log("no <!-- table: ... --> markers in README.md or docs/: nothing to compare");
  }
  assert.deepEqual(stale, [], `run deno task tables:update\n${stale.join("\n")}`);
});

/** A finished run's three committed files. */
async function fakeRun(
  root: string,
  method: string,
  seed: number,
  dice: number,
  perVolume: number[],
): Promise<void> {
  const dir = join(root, "results", "proto", method, `seed${seed}`);
  await Deno.mkdir(dir, { recursive: true });
  const summary = {
    method,
    dataset: "promise12",
    seed,
    iterations: 10,
    seconds_wall: 600 + 60 * seed,
    dice: { prostate: dice },
    dice_mean: dice,
    per_volume: Object.fromEntries(
      perVolume.map((d, i) => [`Case0${i}_0`, { dice: { prostate: d }, hd95: {} }]),
    ),
  };
  await Deno.writeTextFile(join(dir, "summary.json"), JSON.stringify(summary, null, 2));
  await Deno.writeTextFile(join(dir, "metrics.jsonl"), `{"iteration":10,"loss":0.1}\n`);
  await Deno.writeTextFile(join(dir, "recipe.yaml"), `method: ${method}\n`);
}

async function synthetic(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "results-tables-" });
  try {
    for (const seed of [1, 2, 3]) {
      await fakeRun(root, "partial", seed, 0.6 + 0.01 * seed, [0.5, 0.6, 0.7 + 0.01 * seed]);
      await fakeRun(root, "ours-kl-authors", seed, 0.7 + 0.02 * seed, [0.6, 0.75, 0.8]);
    }
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

const COMMAND = "deno task table results/proto --baseline ours-kl-authors";

const DOC = `# Results

Some text.

<!-- table: ${COMMAND} -->

| method | seeds | mean |
| --- | ---: | ---: |
| partial | 3 | 1.00 |

<!-- /table -->

More text.
`;

Deno.test("tables:update fills a marked block with the command's output, and a changed number makes it stale", async () => {
  await synthetic(async (root) => {
    const expected = await renderTableCommand(COMMAND, root);
    assert.match(
      expected,
      /^\| method +\| seeds \| +mean \| p \(ours-kl-authors >\) \| p seeds \| +min \|$/m,
    );
    assert.match(expected, /^\| partial +\| +3 \| 62\.00 \(1\.00\) \| +\d.*\| 12\.0 \|$/m);
    assert.match(
      expected,
      /^\| ours-kl-authors \| +3 \| 74\.00 \(2\.00\) \| +- \| +- \| 12\.0 \|$/m,
    );

    const stale = await staleTables(DOC, "README.md", root);
    assert.equal(stale.length, 1);
    assert.equal(stale[0].line, 5);

    const { text, changed } = await updateTables(DOC, "README.md", { root });
    assert.equal(changed, 1);
    assert.deepEqual(await staleTables(text, "README.md", root), []);
    assert.ok(text.startsWith("# Results\n\nSome text.\n\n<!-- table: "));
    assert.ok(text.endsWith("<!-- /table -->\n\nMore text.\n"));
    const [block] = findTableBlocks(text);
    assert.equal(
      normalizeTableText(text.slice(block.start, block.end)),
      normalizeTableText(expected),
    );
    // a second update changes nothing
    assert.equal((await updateTables(text, "README.md", { root })).changed, 0);
    // a --versus marker prints the comparison, its note naming the folders as typed
    const versus = await renderTableCommand(
      "deno task table results/proto/partial --versus results/proto",
      root,
    );
    assert.match(
      versus,
      /^\| partial +\| +3 \| 62\.00 \(1\.00\) \| +3 \| 62\.00 \(1\.00\) \| +3 \| +\+0\.00 \| +n\/a \|$/m,
    );
    assert.match(
      versus,
      /^\| ours-kl-authors \| +\| +\| +3 \| 74\.00 \(2\.00\) \| +0 \| +\| +\|$/m,
    );
    assert.match(
      versus,
      /of results\/proto\/partial \(seeds, mean\) and of results\/proto \(versus\)/,
    );

    // one edited number is a difference
    const edited = text.replace("62.00 (1.00)", "62.10 (1.00)");
    assert.notEqual(edited, text);
    const found = await staleTables(edited, "README.md", root);
    assert.equal(found.length, 1);
    assert.match(found[0].actual, /62\.10/);
    assert.match(found[0].expected, /62\.00/);
    // so does a new run
    await fakeRun(root, "partial", 4, 0.9, [0.9, 0.9, 0.9]);
    assert.equal((await staleTables(text, "README.md", root)).length, 1);
  });
});

Deno.test("deno task tables:update rewrites the documents in place, deno-fmt clean, equal to deno task table", async () => {
  await synthetic(async (root) => {
    await Deno.mkdir(join(root, "docs"));
    await Deno.writeTextFile(join(root, "README.md"), DOC);
    await Deno.writeTextFile(join(root, "docs", "results.md"), DOC.replace("partial | 3", "x | 1"));
    const script = join(REPO_ROOT, "app", "doc_tables.ts");
    const update = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-write", "--allow-run=deno", script, "--root", root],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(update.stdout);
    assert.equal(update.code, 0, new TextDecoder().decode(update.stderr));
    assert.match(out, /README\.md: 1 of 1 table\(s\) rewritten/);
    assert.match(out, /docs\/results\.md: 1 of 1 table\(s\) rewritten/);
    const readme = await Deno.readTextFile(join(root, "README.md"));
    // what the real command prints, run from the root
    const table = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        join(REPO_ROOT, "app", "cli.ts"),
        ...COMMAND.split(" ").slice(2),
      ],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(table.code, 0, new TextDecoder().decode(table.stderr));
    const [block] = findTableBlocks(readme);
    assert.equal(
      normalizeTableText(readme.slice(block.start, block.end)),
      normalizeTableText(new TextDecoder().decode(table.stdout)),
    );
    // deno fmt (with this repository's settings) leaves the result alone
    const fmt = await new Deno.Command(Deno.execPath(), {
      args: ["fmt", "--check", "--config", join(REPO_ROOT, "deno.json"), join(root, "README.md")],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(fmt.code, 0, new TextDecoder().decode(fmt.stderr));
  });
});

Deno.test("table markers: missing runs, a missing closing marker and bad commands are errors", async () => {
  await synthetic(async (root) => {
    await assert.rejects(
      () =>
        staleTables(
          `<!-- table: deno task table results/none -->\n\n<!-- /table -->\n`,
          "x.md",
          root,
        ),
      /run directory: .*results\/none/,
    );
    assert.throws(
      () => findTableBlocks(`<!-- table: ${COMMAND} -->\n| a |\n`, "x.md"),
      /x\.md:1: .*no closing/,
    );
    // a marker quoted inside a line is not a marker
    assert.deepEqual(
      findTableBlocks("Write `<!-- table: deno task table results/x -->` ... `<!-- /table -->`.\n"),
      [],
    );
    assert.throws(() => parseTableCommand("deno task plot results"), /not a "deno task table/);
    assert.throws(
      () => parseTableCommand("deno task table results --seeds 1"),
      /unknown option --seeds/,
    );
    assert.throws(() => parseTableCommand("deno task table --baseline"), /needs a value/);
    assert.deepEqual(parseTableCommand(`deno task table 'results/a b' --baseline=x --format csv`), {
      paths: ["results/a b"],
      baseline: "x",
      format: "csv",
    });
    assert.deepEqual(parseTableCommand("deno task table results/a --grid source"), {
      paths: ["results/a"],
      format: "md",
      grid: "source",
    });
    assert.throws(
      () => parseTableCommand("deno task table results/a --grid scan"),
      /--grid is network or source, not "scan"/,
    );
    assert.deepEqual(
      parseTableCommand("deno task table results/b --versus results/a --versus=results/c"),
      { paths: ["results/b"], format: "md", versus: ["results/a", "results/c"] },
    );
    assert.throws(
      () => parseTableCommand("deno task table results/b --versus results/a --per-seed"),
      /--versus takes none of --baseline, --per-seed, --power/,
    );
  });
});
