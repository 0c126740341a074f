/**
 * `node:zlib` in the browser bundle: the page gunzips and gzips with the platform's
 * `DecompressionStream` / `CompressionStream` before the NIfTI codec sees the bytes, so the
 * codec's synchronous zlib calls are never reached there.
 *
 * @module
 */
function unavailable(): never {
  throw new Error("zlib is not available in the browser bundle");
}
/** Not available in the browser. */
export const gunzipSync = unavailable;
/** Not available in the browser. */
export const gzipSync = unavailable;
/** Not available in the browser. */
export const inflateSync = unavailable;
/** Not available in the browser. */
export const deflateSync = unavailable;
/** Not available in the browser. */
export const unzipSync = unavailable;
/** Not available in the browser. */
export const crc32 = unavailable;
