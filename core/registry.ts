/**
 * A registry of plugins of one kind (regularizers, transforms, datasets, models).
 *
 * @module
 */
import { UserError } from "./errors.ts";

/** Options of {@linkcode Registry.register}. */
export interface RegisterOptions {
  /** Replace an entry with the same id instead of failing. @default {false} */
  override?: boolean;
}

/** Anything a registry can hold: it carries an explicit, stable string id. */
export interface Identified {
  /** The id used in recipes (`type: <id>`). */
  readonly id: string;
  /** One line shown by `plugins`. */
  readonly description?: string;
}

/**
 * A registry of plugins of one kind, keyed by id.
 *
 * @example
 * ```ts
 * import { Registry } from "./registry.ts";
 * const r = new Registry<{ id: string }>("model");
 * r.register({ id: "unet" });
 * r.get("unet");
 * ```
 */
export class Registry<T extends Identified> {
  readonly #entries = new Map<string, T>();

  /**
   * A new, empty registry (the shared ones come from {@linkcode sharedRegistry}).
   *
   * @param kind What the registry holds, used in error messages ("regularizer").
   * @param plural Its plural in messages. @default {`${kind}s`}
   */
  constructor(readonly kind: string, readonly plural: string = `${kind}s`) {}

  /** Add `entry`; a taken id is an error unless `options.override` is set. */
  register(entry: T, options: RegisterOptions = {}): T {
    if (typeof entry.id !== "string" || entry.id.length === 0) {
      throw new Error(`Cannot register ${this.kind}: it has no string id`);
    }
    if (this.#entries.has(entry.id) && !options.override) {
      throw new Error(
        `Cannot register ${this.kind} "${entry.id}": the id is taken; ` +
          `pass { override: true } to replace it`,
      );
    }
    this.#entries.set(entry.id, entry);
    return entry;
  }

  /** Whether `id` is registered. */
  has(id: string): boolean {
    return this.#entries.has(id);
  }

  /** The entry for `id`; an unknown id throws a {@linkcode UserError} listing the known ids. */
  get(id: string): T {
    const entry = this.#entries.get(id);
    if (entry === undefined) {
      throw new UserError(
        `Unknown ${this.kind} "${id}"; known ${this.plural}: ${this.ids().join(", ") || "(none)"}`,
      );
    }
    return entry;
  }

  /** Registered ids, sorted. */
  ids(): string[] {
    return [...this.#entries.keys()].sort();
  }

  /** Registered entries, sorted by id. */
  entries(): T[] {
    return this.ids().map((id) => this.#entries.get(id)!);
  }

  /** Remove `id` (for tests and plugin reloading). */
  unregister(id: string): boolean {
    return this.#entries.delete(id);
  }
}

const SHARED = Symbol.for("mi-ssl.registries");

/**
 * The process-wide registry for `kind`. Registries live on `globalThis`, so a plugin that imports
 * `mod.ts` from another URL (a release URL while the CLI runs from a checkout) still registers
 * into the registries the trainer reads.
 */
export function sharedRegistry<T extends Identified>(kind: string, plural?: string): Registry<T> {
  const g = globalThis as unknown as Record<symbol, Map<string, Registry<Identified>>>;
  const all = g[SHARED] ??= new Map();
  let registry = all.get(kind);
  if (registry === undefined) {
    registry = new Registry<Identified>(kind, plural);
    all.set(kind, registry);
  }
  return registry as unknown as Registry<T>;
}
