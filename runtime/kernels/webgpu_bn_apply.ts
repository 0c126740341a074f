/**
 * The element-wise program of the fused training batch norm + ReLU's gradient on webgpu
 * (`webgpu_bn.ts` runs it after the reductions of `webgpu_bn_programs.ts` and
 * `webgpu_bn_record.ts`): `dx` from the groups' table, a thread per value, data bound flat. (The
 * forward's normalisation is in `webgpu_bn_record.ts`, with the combination of the blocks.)
 *
 * @module
 */
import { BnProgram, GEOMETRY_UNIFORMS, GRAD_ROWS, GROUP_OF } from "./webgpu_bn_programs.ts";

/** Element-wise programs: a thread per value. */
abstract class BnElementwise extends BnProgram {
  abstract override readonly variableNames: string[];
  override readonly workgroupSize: [number, number, number] = [128, 1, 1];
  override readonly uniforms = GEOMETRY_UNIFORMS + " size : i32,";

  constructor(readonly count: number) {
    super(count, Math.ceil(count / 128));
  }

  protected wrap(body: string): string {
    return `
      ${this.variableNames.includes("spans") ? GROUP_OF : ""}
      fn flatIndex() -> i32 {
        return i32((workgroupId.z * numWorkgroups.y + workgroupId.y) * numWorkgroups.x +
          workgroupId.x) * 128 + i32(localIndex);
      }
      fn main(unused : i32) {
        let index = flatIndex();
        if (index < uniforms.size) {
          ${body}
        }
      }
    `;
  }
}

/** `dx = a dz + b (x - mean) + k0` per value, from the gradient's table. */
export class BnGradApplyProgram extends BnElementwise {
  readonly variableNames = ["dy", "x", "y", "table", "spans"];
  readonly shaderKey = "miSslBnGradApply";

  getUserCode(): string {
    return this.wrap(`
      let C = uniforms.channels;
      let c = index % C;
      let k = groupOf(index / C / uniforms.pixels);
      let at = k * ${GRAD_ROWS} * C + c;
      var dz = dy[index];
      if (uniforms.relu != 0 && !(y[index] > 0.0)) { dz = 0.0; }
      result[index] = table[at + 2 * C] * dz + table[at + 3 * C] * (x[index] - table[at + 5 * C]) +
        table[at + 4 * C];
    `);
  }
}
