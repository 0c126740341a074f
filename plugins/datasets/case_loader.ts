/**
 * Loading cases through the on-disk cache: {@linkcode loadCases} reads each
 * {@linkcode CaseSource} (or finds it in the cache, keyed by its files and the preprocessing)
 * and preprocesses it ({@linkcode prepareCase}).
 *
 * @module
 */
import type { VolumeSource } from "../../core/dataset.ts";
import { CaseCache, type SourceSignature, sourceSignature } from "./_cache.ts";
import {
  prepareCase,
  type PrepareContext,
  type PreparedCase,
  type RawCase,
  storedLabel,
} from "./preprocess.ts";
import { volumeOnScanGrid } from "./scan_grid.ts";

/** A case (one volume) to load: its ids, its files and how to read them. */
export interface CaseSource {
  /** Volume id, unique in the dataset (`patient001_frame01`). */
  id: string;
  /** The patient it belongs to. */
  patient: string;
  /** Every file it is read from (their sizes and times key the cache). */
  files: string[];
  /** Whether the case must have labels (a cached entry without them is then re-read). */
  needsLabel?: boolean;
  /** Read the raw volumes. */
  read(): Promise<RawCase>;
}

/** Options of {@linkcode loadCases}. */
export interface LoadCasesOptions extends PrepareContext {
  /** Cache directory, or `null` for no cache. */
  cacheDir: string | null;
  /**
   * The data folder: source paths are keyed relative to it, so one folder reached by two paths
   * shares its cache entries.
   */
  root?: string;
  /** Extra values that change the output (e.g. the layout), added to the cache key. */
  cacheKey?: unknown;
  /** Progress messages. */
  log?: (message: string) => void;
  /** Called with each raw case read (not for cache hits); tests count reads with it. */
  onRead?: (id: string) => void;
}

/**
 * Read and preprocess cases, through the on-disk cache when one is given: an entry whose
 * source files changed, or that is truncated or corrupted, is rebuilt.
 *
 * @returns The cases in the order of `sources`.
 */
export async function loadCases(
  sources: CaseSource[],
  options: LoadCasesOptions,
): Promise<PreparedCase[]> {
  const start = performance.now();
  const { prep, numClasses, scaledLabels } = options;
  const cache = options.cacheDir
    ? await CaseCache.open(options.cacheDir, options.datasetId, {
      prep,
      numClasses,
      scaledLabels: scaledLabels ?? false,
      extra: options.cacheKey ?? null,
    })
    : null;
  const out: PreparedCase[] = [];
  let hits = 0, rebuilt = 0, cacheFailures = 0, built = 0;
  let lastLog = performance.now();
  for (const [i, source] of sources.entries()) {
    let signature: SourceSignature | null = null;
    if (cache) {
      signature = await sourceSignature(source.files, options.root);
      const found = await cache.read(source.id, signature);
      if (found.status === "hit" && !(source.needsLabel && !found.value.label)) {
        out.push({ ...found.value, source: volumeSource(source, found.value.shape, options) });
        hits++;
        continue;
      }
      if (found.status === "corrupt") {
        rebuilt++;
        options.log?.(`Cache entry of "${source.id}" is corrupt (${found.reason}); rebuilding it`);
      }
    }
    const raw = await source.read();
    options.onRead?.(source.id);
    const prepared = prepareCase(raw, options, source);
    out.push({ ...prepared, source: volumeSource(source, prepared.shape, options) });
    if (cache && signature) {
      if (built++ === 0) {
        options.log?.(
          `${options.datasetId}: caching the preprocessed volumes in ${cache.dir} ` +
            `(deno task cache --clear empties the cache)`,
        );
      }
      try {
        await cache.write(prepared, signature);
      } catch (error) {
        if (cacheFailures++ === 0) {
          options.log?.(`Cannot write the cache in "${cache.dir}": ${(error as Error).message}`);
        }
      }
    }
    if (performance.now() - lastLog > 5000) {
      lastLog = performance.now();
      options.log?.(`${options.datasetId}: ${i + 1} / ${sources.length} volumes prepared`);
    }
  }
  const ms = performance.now() - start;
  options.log?.(
    `${options.datasetId}: ${sources.length} volumes (${hits} from the cache` +
      (rebuilt ? `, ${rebuilt} rebuilt` : "") + `) in ${ms.toFixed(0)} ms` +
      (cache ? ` | cache ${cache.dir}` : ""),
  );
  return out;
}

/**
 * A case's {@linkcode VolumeSource}: its image and label read again through the case's own
 * reader, and network-grid predictions brought back onto its grid by the inverse of the
 * preprocessing it was loaded with (`context.prep`).
 */
function volumeSource(
  source: CaseSource,
  shape: readonly number[],
  context: PrepareContext,
): VolumeSource {
  const path = source.files[0];
  return {
    path,
    read: async () => (await source.read()).image,
    readLabel: async () => {
      const raw = await source.read();
      const label = storedLabel(raw, context);
      return label && { ...raw.label!, data: label };
    },
    toSourceGrid: async (probabilities, numClasses) => {
      const raw = await source.read();
      const { labels, layout } = volumeOnScanGrid(
        raw.image,
        context.prep,
        probabilities,
        numClasses,
        {
          id: source.id,
          shape,
          path,
        },
      );
      return {
        labels,
        label: storedLabel(raw, context, layout),
        image: raw.image,
        shape: layout.shape3d,
        ...(raw.image.spacingKnown === false ? {} : { spacing: layout.spacing3d }),
      };
    },
  };
}
