/**
 * The fields a tfjs-backend-webgpu `WebGPUProgram` of ours has when it runs one flat row of
 * workgroups of 256 threads (the batch norm's programs, the fused losses'): subclasses name their
 * inputs, shader key, uniforms and code.
 *
 * @module
 */

/** Threads per workgroup of a {@linkcode FlatProgram}. */
export const FLAT_THREADS = 256;

/** A webgpu program over `workgroups` workgroups in x, writing `outputSize` values. */
export abstract class FlatProgram {
  abstract readonly variableNames: string[];
  /** WGSL uniform fields (tfjs appends its own). */
  readonly uniforms: string = "";
  readonly workgroupSize: [number, number, number] = [FLAT_THREADS, 1, 1];
  readonly dispatchLayout = { x: [0] };
  readonly outputShape: number[];
  readonly dispatch: [number, number, number];
  abstract readonly shaderKey: string;

  constructor(outputSize: number, workgroups: number) {
    this.outputShape = [outputSize];
    // tfjs spreads more than 65,535 workgroups over y and z; the code flattens them back
    this.dispatch = [workgroups, 1, 1];
  }
  abstract getUserCode(): string;
}
