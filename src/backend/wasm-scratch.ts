/**
 * Helpers for kernels that compose other wasm kernels: call them directly (as tfjs-backend-wasm's
 * own kernels do), and free every intermediate with `backend.disposeData`, so nothing is tracked
 * by the engine and nothing leaks.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelBackend, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs';

export type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];
export type Shape4 = [number, number, number, number];

/** The attributes tfjs passes to both convolution gradient kernels. */
export interface ConvGradAttrs {
  strides: number | [number, number];
  pad: Pad;
  dataFormat?: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

export interface KernelArgs {
  inputs: NamedTensorInfoMap;
  backend: KernelBackend;
  attrs: NamedAttrMap;
}

/** Collects intermediates so each kernel frees them in one place. */
interface WasmInternals {
  dataIdMap: { get(id: object): { id: number; memoryOffset: number }; set(id: object, v: unknown): void; delete(id: object): void };
  dataIdNextNumber: number;
  wasm: { tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void } };
}

export class Scratch {
  private readonly held: TensorInfo[] = [];
  private readonly views: TensorInfo[] = [];
  constructor(readonly backend: KernelBackend) {}

  /**
   * A float32 tensor that aliases `x`'s memory from element `offset` on: a free, contiguous
   * slice. It must not outlive `x`; `finish` unregisters it without freeing the memory.
   */
  view(x: TensorInfo, offset: number, shape: number[]): TensorInfo {
    const size = shape.reduce((a, b) => a * b, 1);
    const total = (x.shape as number[]).reduce((a, b) => a * b, 1);
    if (x.dtype !== 'float32' || offset < 0 || offset + size > total) throw new Error('Scratch.view: out of range');
    const b = this.backend as unknown as WasmInternals;
    const base = b.dataIdMap.get(x.dataId).memoryOffset;
    const id = b.dataIdNextNumber++;
    const dataId = {};
    const memoryOffset = base + offset * 4;
    b.dataIdMap.set(dataId, { id, memoryOffset, shape, dtype: 'float32', refCount: 1 });
    b.wasm.tfjs.registerTensor(id, size, memoryOffset);
    const out: TensorInfo = { dataId, shape, dtype: 'float32' };
    this.views.push(out);
    return out;
  }

  run(name: string, inputs: NamedTensorInfoMap, attrs: NamedAttrMap = {}): TensorInfo {
    const kernel = tf.getKernel(name, 'wasm');
    if (kernel === undefined) throw new Error(`wasm kernel ${name} is not registered`);
    const out = kernel.kernelFunc({ inputs, backend: this.backend, attrs }) as TensorInfo;
    this.held.push(out);
    return out;
  }

  /** A tensor made from JS values (small: indices and the like). */
  constant(values: Int32Array | Float32Array, shape: number[]): TensorInfo {
    const dtype = values instanceof Int32Array ? 'int32' : 'float32';
    const out = (this.backend as unknown as { makeOutput: (s: number[], d: string, o: undefined, v: unknown) => TensorInfo })
      .makeOutput(shape, dtype, undefined, values);
    this.held.push(out);
    return out;
  }

  reshape(x: TensorInfo, shape: number[]): TensorInfo {
    return this.run('Reshape', { x }, { shape });
  }

  transpose(x: TensorInfo, perm: number[]): TensorInfo {
    return this.run('Transpose', { x }, { perm });
  }

  /** Stride-1 NHWC convolution with the given dilation and padding. */
  conv(x: TensorInfo, filter: TensorInfo, pad: Pad, dilations: [number, number] = [1, 1]): TensorInfo {
    return this.run('Conv2D', { x, filter }, { strides: [1, 1], pad, dataFormat: 'NHWC', dilations, dimRoundingMode: 'floor' });
  }

  /** Crops (trailing rows/cols) or zero-pads (at the bottom/right) an NHWC tensor to h x w. */
  fitHW(x: TensorInfo, h: number, w: number): TensorInfo {
    const [n, xh, xw, c] = x.shape as Shape4;
    let t = x;
    if (xh > h || xw > w) t = this.run('Slice', { x: t }, { begin: [0, 0, 0, 0], size: [n, Math.min(h, xh), Math.min(w, xw), c] });
    if (xh < h || xw < w) {
      t = this.run('PadV2', { x: t }, { paddings: [[0, 0], [0, Math.max(0, h - xh)], [0, Math.max(0, w - xw)], [0, 0]], constantValue: 0 });
    }
    return t;
  }

  /** Frees everything except `keep`, which becomes the kernel's output. */
  finish(keep: TensorInfo): TensorInfo {
    const b = this.backend as unknown as WasmInternals;
    for (const v of this.views) {
      // Forget the alias (and any XNNPACK operator cached for it) without freeing its memory.
      b.wasm.tfjs.disposeData(b.dataIdMap.get(v.dataId).id);
      b.dataIdMap.delete(v.dataId);
    }
    for (const t of this.held) if (t !== keep) this.backend.disposeData(t.dataId);
    return keep;
  }
}

export function checkNHWC(attrs: ConvGradAttrs): void {
  if (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC') {
    throw new Error(`wasm conv gradients support NHWC only, got ${attrs.dataFormat}`);
  }
}

/**
 * Inserts stride-1 zeros after every row and column ([n,h,w,c] -> [n,h*sh,w*sw,c]) with two
 * pads on reshaped views.
 */
export function dilateWithZeros(s: Scratch, x: TensorInfo, sh: number, sw: number): TensorInfo {
  const [n, h, w, c] = x.shape as Shape4;
  let t = x;
  if (sw > 1) t = s.run('PadV2', { x: s.reshape(t, [n * h, w, 1, c]) }, { paddings: [[0, 0], [0, 0], [0, sw - 1], [0, 0]], constantValue: 0 });
  if (sh > 1) t = s.run('PadV2', { x: s.reshape(t, [n * h, 1, w * sw * c]) }, { paddings: [[0, 0], [0, sh - 1], [0, 0]], constantValue: 0 });
  return s.reshape(t, [n, h * sh, w * sw, c]);
}
