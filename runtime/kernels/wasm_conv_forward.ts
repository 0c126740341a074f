/**
 * Forward convolutions for the wasm backend: `Conv2D` and `FusedConv2D` (bias, ReLU) on the SIMD
 * GEMM kernels of `wasm_conv.ts` where they apply, 1x1 convolutions as one `BatchMatMul`, and
 * XNNPACK (tfjs's kernel) for the rest.
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { gemmConv2D } from "./wasm_conv.ts";
import { MATMUL_MAX_SMALL, MATMUL_MIN_LONG, product } from "./wasm_matmul.ts";
import type { Backend, Conv2DInfo, KernelArgs, TensorInfo } from "./wasm_kernel_util.ts";
import { fallback } from "./wasm_kernel_util.ts";

/** Forward convolution: the SIMD GEMM kernels where they apply, else XNNPACK. */
export function conv2D(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { x, filter } = args.inputs as { x: TensorInfo; filter: TensorInfo };
  const { strides, pad, dataFormat, dilations, dimRoundingMode } = args
    .attrs as unknown as tf.Conv2DAttrs;
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filter.shape as [number, number, number, number],
    strides,
    dilations,
    pad,
    dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(dataFormat),
  );
  return gemmConv2D(backend, x, filter, info) ?? pointwiseConv(backend, x, filter, info) ??
    fallback(tf.Conv2D, args);
}

/**
 * A 1x1 stride-1 convolution without padding that the GEMM kernels do not take (their output
 * channels go by 8: the U-Net's head, with 4 or 2 classes) is the tall product `[pixels, ci]
 * [ci, co]` of `wasmBatchMatMul`, split by rows between the threads; XNNPACK ran it on one
 * (~1 ms of a 128 px step at width 8 with 4 classes, at any thread count). (Its input gradient,
 * 8 output channels, is the GEMM kernels'.) Null for other convolutions.
 */
function pointwiseConv(
  backend: Backend,
  x: TensorInfo,
  filter: TensorInfo,
  info: Conv2DInfo,
): TensorInfo | null {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outChannels: co } = info;
  if (
    !isPointwise(info) || x.dtype !== "float32" || filter.dtype !== "float32" ||
    n * h * w < MATMUL_MIN_LONG || ci * co > MATMUL_MAX_SMALL
  ) return null;
  return product(backend, [x, [n * h * w, ci]], [filter, [ci, co]], false, [n, h, w, co]);
}

/** A 1x1 convolution with stride and dilation 1, without padding, in NHWC. */
export function isPointwise(info: Conv2DInfo): boolean {
  return info.dataFormat === "channelsLast" && info.filterHeight === 1 &&
    info.filterWidth === 1 && info.strideHeight === 1 && info.strideWidth === 1 &&
    info.dilationHeight === 1 && info.dilationWidth === 1 && info.padInfo.top === 0 &&
    info.padInfo.left === 0 && info.outHeight === info.inHeight &&
    info.outWidth === info.inWidth;
}

/** Conv2D + bias + ReLU (or linear) on the GEMM kernels where they apply, else XNNPACK. */
export function fusedConv2D(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { x, filter, bias, preluActivationWeights } = args.inputs as Record<string, TensorInfo>;
  const attrs = args.attrs as unknown as tf.FusedConv2DAttrs;
  if (preluActivationWeights != null || !["linear", "relu"].includes(attrs.activation)) {
    return fallback(tf.FusedConv2D, args);
  }
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filter.shape as [number, number, number, number],
    attrs.strides,
    attrs.dilations,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(attrs.dataFormat),
  );
  return gemmConv2D(backend, x, filter, info, {
    bias: bias ?? undefined,
    relu: attrs.activation === "relu",
  }) ?? fallback(tf.FusedConv2D, args);
}
