import assert from "node:assert/strict";
import { Registry } from "../core/registry.ts";
import { UserError } from "../core/errors.ts";
import { datasets } from "../core/dataset.ts";
import { models } from "../core/model.ts";
import { regularizers } from "../core/regularizer.ts";
import { transforms } from "../core/transform.ts";
import { losses } from "../core/loss.ts";
import { registerBuiltins } from "../plugins/mod.ts";

Deno.test("Registry returns what was registered, sorted by id", () => {
  const r = new Registry<{ id: string }>("widget");
  r.register({ id: "b" });
  r.register({ id: "a" });
  assert.deepEqual(r.ids(), ["a", "b"]);
  assert.equal(r.get("a").id, "a");
  assert.ok(r.has("b"));
});

Deno.test("Registry rejects a duplicate id unless overriding is explicit", () => {
  const r = new Registry<{ id: string; v?: number }>("widget");
  r.register({ id: "a", v: 1 });
  assert.throws(() => r.register({ id: "a", v: 2 }), /widget "a": the id is taken/);
  r.register({ id: "a", v: 3 }, { override: true });
  assert.equal(r.get("a").v, 3);
});

Deno.test("Registry names the known ids when an id is unknown", () => {
  const r = new Registry<{ id: string }>("widget");
  r.register({ id: "x" });
  r.register({ id: "y" });
  assert.throws(() => r.get("z"), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.match((e as Error).message, /Unknown widget "z"; known widgets: x, y/);
    return true;
  });
});

Deno.test("the built-in plugins are registered once per kind", () => {
  registerBuiltins();
  registerBuiltins(); // idempotent
  assert.ok(datasets.has("phantom"));
  assert.ok(models.has("unet"));
  for (const id of ["kl", "mi"]) assert.ok(regularizers.has(id), id);
  for (const id of ["affine", "flip", "compose"]) assert.ok(transforms.has(id), id);
  for (const id of ["cross-entropy", "dice", "dice-ce"]) assert.ok(losses.has(id), id);
});

Deno.test("registerBuiltins keeps a user plugin registered under a built-in id", () => {
  registerBuiltins();
  const builtin = models.get("unet");
  models.unregister("unet");
  const mine = { ...builtin, description: "my own unet" };
  models.register(mine);
  try {
    registerBuiltins();
    assert.equal(models.get("unet"), mine);
  } finally {
    models.unregister("unet");
    registerBuiltins();
  }
  assert.equal(models.get("unet"), builtin);
});
