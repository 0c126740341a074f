/**
 * `node:os` in the browser bundle: the wasm backend's thread set-up (`runtime/kernels/
 * wasm_threads.ts`, never run by the page) patches `os.cpus`; the browser has no such module.
 *
 * @module
 */
const os = {
  /** One entry per logical processor the browser reports. */
  cpus: (): unknown[] => Array.from({ length: navigator.hardwareConcurrency ?? 1 }, () => ({})),
};
export default os;
