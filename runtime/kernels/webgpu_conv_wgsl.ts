/**
 * The WGSL of the tiled convolutions (`webgpu_conv.ts`): how each one's implicit matrix product
 * locates its operands (`GemmSpec` snippets of `webgpu_gemm.ts`), the forward, input gradient and
 * filter gradient of a stride-1 NHWC convolution. The shapes are uniforms
 * ({@linkcode CONV_UNIFORMS}), so one pipeline serves every size.
 *
 * ```ts
 * import { FORWARD } from "./webgpu_conv_wgsl.ts";
 * console.log(FORWARD.aRead); // read_x(rowInfo[i].x, ...)
 * ```
 *
 * @module
 */

/** The uniforms every convolution program declares (after the GEMM's), and their order. */
export const CONV_UNIFORMS =
  "inH : i32, inW : i32, outH : i32, outW : i32, cIn : i32, cOut : i32, " +
  "fh : i32, fw : i32, padT : i32, padL : i32,";

/** WGSL: `t`'s value at (n, y, x, c) of an NHWC tensor of `h x w x ch` pixels, 0 outside. */
const readPadded = (t: string, h: string, w: string, ch: string) => `
  fn read_${t}(n : i32, row : i32, col : i32, c : i32) -> f32 {
    if (row < 0 || row >= uniforms.${h} || col < 0 || col >= uniforms.${w}) {
      return 0.0;
    }
    return ${t}[((n * uniforms.${h} + row) * uniforms.${w} + col) * uniforms.${ch} + c];
  }`;

/** WGSL statements: `(n, y, x)` of pixel `p` (flat over n, y, x) of an `h x w` image. */
const pixel = (p: string, h: string, w: string) => `
  let px = ${p} % uniforms.${w};
  let prest = ${p} / uniforms.${w};
  let py = prest % uniforms.${h};
  let pn = prest / uniforms.${h};`;

/** WGSL statements: `(kh, kw, c)` of `q` (flat over taps, then `ch` channels). */
const tap = (q: string, ch: string) => `
  let tq = ${q} / uniforms.${ch};
  let tc = ${q} % uniforms.${ch};
  let tkh = tq / uniforms.fw;
  let tkw = tq % uniforms.fw;`;

const writeTo = (index: string) => `
  fn writeC(chunk : i32, m : i32, n : i32, value : f32) {
    result[${index}] = value;
  }`;

/**
 * Forward: A = the shifted input (output pixels x taps·cIn), B = the filter (taps·cIn x cOut).
 * rowInfo: (n, y - top, x - left); aCol: (kh, kw, ci).
 */
export const FORWARD = {
  helpers: readPadded("x", "inH", "inW", "cIn"),
  aRow: `${pixel("m", "outH", "outW")}
    rowInfo[i] = vec4<i32>(pn, py - uniforms.padT, px - uniforms.padL, 0);`,
  aCol: `${tap("k", "cIn")}
    aCol = vec4<i32>(tkh, tkw, tc, 0);`,
  aRead: "read_x(rowInfo[i].x, rowInfo[i].y + aCol.x, rowInfo[i].z + aCol.y, aCol.z)",
  bRow: "bRow = vec4<i32>(k * uniforms.cOut, 0, 0, 0);",
  bRead: "W[bRow.x + n]",
  write: writeTo("m * uniforms.cOut + n"),
};

/**
 * Input gradient: A = dy at each input pixel shifted back by each tap (input pixels x
 * taps·cOut), B[(t, co), ci] = W[t, ci, co] (the filter read flipped, no transpose pass).
 * rowInfo: (n, y + top, x + left); aCol: (kh, kw, co).
 */
export const INPUT_GRAD = {
  helpers: readPadded("dy", "outH", "outW", "cOut"),
  aRow: `${pixel("m", "inH", "inW")}
    rowInfo[i] = vec4<i32>(pn, py + uniforms.padT, px + uniforms.padL, 0);`,
  aCol: `${tap("k", "cOut")}
    aCol = vec4<i32>(tkh, tkw, tc, 0);`,
  aRead: "read_dy(rowInfo[i].x, rowInfo[i].y - aCol.x, rowInfo[i].z - aCol.y, aCol.z)",
  bRow: `${tap("k", "cOut")}
    bRow = vec4<i32>(tq * uniforms.cIn * uniforms.cOut + tc, 0, 0, 0);`,
  bRead: "W[bRow.x + n * uniforms.cOut]",
  write: writeTo("m * uniforms.cIn + n"),
};

/**
 * Filter gradient: A = the shifted input, transposed (taps·cIn x output pixels), B = dy
 * (output pixels x cOut); each chunk of pixels writes its own partial result.
 * rowInfo: (kh - top, kw - left, ci); aCol: (n, y, x).
 */
export const FILTER_GRAD = {
  helpers: readPadded("x", "inH", "inW", "cIn"),
  aRow: `${tap("m", "cIn")}
    rowInfo[i] = vec4<i32>(tkh - uniforms.padT, tkw - uniforms.padL, tc, 0);`,
  aCol: `${pixel("k", "outH", "outW")}
    aCol = vec4<i32>(pn, py, px, 0);`,
  aRead: "read_x(aCol.x, aCol.y + rowInfo[i].x, aCol.z + rowInfo[i].y, rowInfo[i].z)",
  bRow: "bRow = vec4<i32>(k * uniforms.cOut, 0, 0, 0);",
  bRead: "dy[bRow.x + n]",
  write: writeTo("(chunk * uniforms.dimM + m) * uniforms.cOut + n"),
};
