/**
 * The joints of the mutual information's displacements as ONE operation: a convolution's filter
 * gradient.
 *
 * For probability maps `p`, `q` (`[B, H, W, C]`) and the `K = k^2` displacements
 * `d = (ky - r, kx - r)` of a `k = 2r + 1` window,
 *
 *     joint[ky, kx, j, i] = sum_{b, y, x} p_i(b, y, x) q_j(b, y + ky - r, x + kx - r)
 *
 * (zero outside the image) is exactly `Conv2DBackpropFilter` with `x = q`, `dy = p`, filter shape
 * `[k, k, C, C]`, stride 1 and `'same'` padding. Every backend has that kernel (ours are tiled
 * on wasm and webgpu), so the pad + `K` slices + concat + `BatchMatMul` of the composed version
 * (`plugins/regularizers/_mi_composed.ts`) and their gradients (a split and `K` pads) become one
 * kernel call forward and two backward.
 *
 * tfjs has no gradient for `Conv2DBackpropFilter`; {@linkcode registerFilterGradGradient} adds
 * its exact one. The filter gradient is bilinear in `x` and `dy`: for an upstream gradient `G`
 * (filter-shaped), `<G, dW(x, dy)> = <dy, conv2d(x, G)> = <x, conv2dBackpropInput(dy, G)>`, so
 * `d dy = conv2d(x, G)` and `d x = conv2dBackpropInput(x.shape, dy, G)`, with the forward
 * kernel's strides and padding. Each is computed only when asked for (a side under
 * `stopGradient` costs nothing).
 *
 * ```ts
 * import { miJoint } from "./mi_joint.ts";
 * const joint = miJoint(p, q, 1); // [3, 3, C, C]
 * ```
 *
 * @module
 */
import { tf } from "../../deps.ts";

/** tfjs's `Conv2DBackpropFilter` attributes. */
interface FilterGradAttrs {
  strides: [number, number] | number;
  pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
  dataFormat: "NHWC" | "NCHW";
  dimRoundingMode?: "floor" | "round" | "ceil";
  filterShape: [number, number, number, number];
}

/** Register the gradient of `Conv2DBackpropFilter` (idempotent; tfjs has none). */
export function registerFilterGradGradient(): void {
  if (tf.getGradient(tf.Conv2DBackpropFilter) !== undefined) return;
  tf.registerGradient({
    kernelName: tf.Conv2DBackpropFilter,
    inputsToSave: ["x", "dy"],
    gradFunc: (dw: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const g = (Array.isArray(dw) ? dw[0] : dw) as tf.Tensor4D;
      const [x, dy] = saved as tf.Tensor4D[];
      const { strides, pad, dataFormat, dimRoundingMode } = attrs as unknown as FilterGradAttrs;
      if (dataFormat !== "NHWC") {
        throw new Error(`the gradient of ${tf.Conv2DBackpropFilter}: NHWC data only`);
      }
      return {
        x: () =>
          tf.engine().runKernel(
            tf.Conv2DBackpropInput,
            { dy, filter: g } as unknown as tf.NamedTensorMap,
            { strides, pad, dataFormat, dimRoundingMode, inputShape: x.shape } as never,
          ) as tf.Tensor4D,
        dy: () => tf.conv2d(x, g, strides, pad as never, dataFormat, 1, dimRoundingMode),
      };
    },
  });
}

/**
 * The joints `[k, k, C, C]` (`k = 2r + 1`) of `p` and `q` (`[B, H, W, C]`) over the window of
 * radius `r`: `joint[ky, kx, j, i] = sum_{b,y,x} p_i(b, y, x) q_j(b, y + ky - r, x + kx - r)`,
 * differentiable in both (see the module comment).
 */
export function miJoint(p: tf.Tensor4D, q: tf.Tensor4D, r: number): tf.Tensor4D {
  if (!Number.isInteger(r) || r < 0) {
    throw new Error(`miJoint: radius must be an integer >= 0, got ${r}`);
  }
  if (p.shape.join() !== q.shape.join()) {
    throw new Error(`miJoint: shapes differ, ${p.shape} vs ${q.shape}`);
  }
  registerFilterGradGradient();
  const k = 2 * r + 1;
  const c = p.shape[3];
  const attrs: FilterGradAttrs = {
    strides: [1, 1],
    pad: "same",
    dataFormat: "NHWC",
    dimRoundingMode: undefined,
    filterShape: [k, k, c, c],
  };
  return tf.engine().runKernel(
    tf.Conv2DBackpropFilter,
    { x: q, dy: p } as unknown as tf.NamedTensorMap,
    attrs as unknown as tf.NamedAttrMap,
  ) as tf.Tensor4D;
}
