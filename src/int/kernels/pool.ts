// MaxPool on integer (and float) tensors: 1-D to 3-D, pads, strides, dilations, auto_pad, ceil_mode,
// and the optional Indices output (int64, row- or column-major per storage_order).
import { type TensorData, GraphError, attrInt, attrInts } from '../../graph/ir.js';
import type { IntKernel, KernelContext } from '../registry.js';
import { isIntDType, intRange, numArray, outputTensor, requireInput } from '../tensor.js';
import { to3d, windowGeometry } from './common.js';
import { intGemmProvider } from './gemm.js';

/** Geometry for the provider's MaxPool, reused: no small typed array per run. */
const GEO = new Int32Array(13);

function maxPool(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): TensorData[] {
  const { node } = ctx;
  const x = requireInput(inputs, 0, node, 'X');
  const r = x.dims.length - 2;
  if (r < 1 || r > 3) throw new GraphError(`X must be 3-D to 5-D (N, C, spatial...), got rank ${x.dims.length}`, node);
  const kernel = attrInts(node, 'kernel_shape');
  if (!kernel || kernel.length !== r) throw new GraphError(`kernel_shape must have ${r} values`, node);
  const win = windowGeometry(node, x.dims.slice(2), kernel, attrInt(node, 'ceil_mode', 0) !== 0);
  const columnMajor = attrInt(node, 'storage_order', 0) === 1;
  const [ID, IH, IW] = to3d(win.inSize, 1);
  const [KD, KH, KW] = to3d(kernel, 1);
  const [SD, SH, SW] = to3d(win.strides, 1);
  const [DD, DH, DW] = to3d(win.dilations, 1);
  const [PD, PH, PW] = to3d(win.padBegin, 0);
  const [OD, OH, OW] = to3d(win.outSize, 1);
  const [N, C] = x.dims;
  const xs = numArray(x, node, 'X');
  const out = outputTensor(x.dtype, [N, C, ...win.outSize]);
  const y = out.data as typeof xs;
  const wantIdx = node.outputs.length > 1 && node.outputs[1] !== '';
  const maxPool2d = intGemmProvider()?.maxPool;
  if (maxPool2d && r <= 2 && !wantIdx && y.length > 0 && (xs instanceof Int8Array || xs instanceof Uint8Array)) {
    GEO.set([N * C, IH, IW, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW]);
    maxPool2d(xs, GEO, y as Int8Array | Uint8Array);
    return [out];
  }
  const idx = wantIdx ? new BigInt64Array(y.length) : undefined;
  // a window entirely in the padding yields the lowest value, as ONNX Runtime's int8 kernels do
  const lowest = isIntDType(x.dtype) ? intRange(x.dtype, node).qmin : -Infinity;
  const plane = ID * IH * IW;
  let o = 0;
  for (let nc = 0; nc < N * C; nc++) {
    const base = nc * plane;
    for (let od = 0; od < OD; od++)
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++, o++) {
          let best = lowest;
          let bestAt = -1;
          for (let kd = 0; kd < KD; kd++) {
            const id = od * SD - PD + kd * DD;
            if (id < 0 || id >= ID) continue;
            for (let kh = 0; kh < KH; kh++) {
              const ih = oh * SH - PH + kh * DH;
              if (ih < 0 || ih >= IH) continue;
              const row = base + (id * IH + ih) * IW;
              for (let kw = 0; kw < KW; kw++) {
                const iw = ow * SW - PW + kw * DW;
                if (iw < 0 || iw >= IW) continue;
                const v = xs[row + iw];
                if (v > best || bestAt < 0) {
                  best = v;
                  bestAt = columnMajor ? base + (iw * IH + ih) * ID + id : row + iw;
                }
              }
            }
          }
          y[o] = best;
          if (idx) idx[o] = BigInt(bestAt < 0 ? 0 : bestAt);
        }
  }
  return idx ? [out, { dtype: 'int64', dims: [...out.dims], data: idx }] : [out];
}

export const poolKernels: IntKernel[] = [{ op: 'MaxPool', run: (inputs, ctx) => maxPool(inputs, ctx) }];
