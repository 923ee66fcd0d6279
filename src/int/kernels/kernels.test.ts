// Kernels against straightforward references, for the forms the ONNX suite and ONNX Runtime do not cover:
// 3-D and per-channel-zero-point convolution, per-row matmul scales, blocked and 4/16-bit quantization.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Attr, type DType, type Graph, type TensorData, elementCount } from '../../graph/ir.js';
import { runInt } from '../engine.js';
import { rint } from '../tensor.js';
import { quantizeMultiplier } from '../fixedpoint.js';
import { type Sink, drain, drainScratch } from './common.js';
import { gemmNT, wasmRegions } from './gemm.js';
import { setIntWasm, wasmGemm } from './wasm_gemm.js';
import { TestRng as R } from '../test_util.js';

/** Run `fn` with the WebAssembly kernels on, then off (each test checks both paths give the same answers). */
function bothPaths(fn: (mode: string) => void): void {
  for (const on of [true, false]) {
    const was = setIntWasm(on);
    try {
      fn(on ? 'wasm' : 'js');
    } finally {
      setIntWasm(was);
    }
  }
}


const T = (dtype: DType, dims: number[], vals: ArrayLike<number>): TensorData => {
  const ctor = { uint8: Uint8Array, int8: Int8Array, int32: Int32Array, float32: Float32Array, int16: Int16Array, uint16: Uint16Array }[dtype as 'uint8'];
  const data = ctor.from(vals);
  assert.equal(data.length, elementCount(dims));
  return { dtype, dims, data };
};
const randT = (r: R, dtype: DType, dims: number[], lo: number, hi: number): TensorData =>
  T(dtype, dims, Array.from({ length: elementCount(dims) }, () => r.int(lo, hi)));

/** One node; `inputs` maps names to tensors, '' stays an omitted input. All become initializers but x, fed. */
function run1(op: string, names: string[], tensors: Record<string, TensorData>, attrs: Record<string, Attr> = {}, opset = 21, outputs = ['y']): TensorData[] {
  const g: Graph = {
    name: op,
    nodes: [{ name: 'n', op, inputs: names, outputs, attrs }],
    inputs: [{ name: 'x', dtype: tensors.x.dtype }],
    outputs: outputs.map((name) => ({ name, dtype: 'uint8' as DType })),
    initializers: new Map(Object.entries(tensors).filter(([k]) => k !== 'x')),
    opsets: { '': opset },
  };
  const res = runInt(g, { x: tensors.x });
  return outputs.map((o) => res[o]);
}
const ints = (value: number[]): Attr => ({ type: 'ints', value });
const int = (value: number): Attr => ({ type: 'int', value });
const arr = (t: TensorData): number[] => Array.from(t.data as ArrayLike<number>);

test('gemmNT equals a naive triple loop, with row/column tails, accumulate, and int32 wrap-around', () => {
  const r = new R(1);
  for (const [M, N, K] of [[1, 1, 1], [3, 5, 7], [2, 4, 16], [5, 9, 33], [8, 3, 2]]) {
    const A = Int16Array.from({ length: M * K + 3 }, () => r.int(-255, 255));
    const B = Int16Array.from({ length: N * K + 5 }, () => r.int(-255, 255));
    const C = new Int32Array(2 + M * (N + 1)).fill(7);
    gemmNT(M, N, K, A, 3, B, 5, C, 2, N + 1, true); // offsets and a row stride larger than N
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = 7;
        for (let k = 0; k < K; k++) s += A[3 + i * K + k] * B[5 + j * K + k];
        assert.equal(C[2 + i * (N + 1) + j], s, `C[${i},${j}] of ${M}x${N}x${K}`);
      }
  }
  // accumulation wraps like int32: 40000 * (255 * 255) overflows
  const K = 40000;
  const C = new Int32Array(1);
  gemmNT(1, 1, K, new Int16Array(K).fill(255), 0, new Int16Array(K).fill(255), 0, C, 0, 1, false);
  assert.equal(C[0], (K * 255 * 255) | 0);
});

/** Naive quantized convolution (N, C, D, H, W layout; 1-3 spatial dims) and ONNX Runtime's float requantization. */
function refQLinearConv(
  x: TensorData, xs: number, xz: number, w: TensorData, ws: number[], wz: number[], ys: number, yz: number, bias: number[] | undefined,
  group: number, strides: number[], dil: number[], padB: number[], outSize: number[], qmin: number, qmax: number,
): number[] {
  const X = arr(x);
  const W = arr(w);
  const [N, C, ...sp] = x.dims;
  const [OC, Cg, ...ks] = w.dims;
  const r = sp.length;
  const OCg = OC / group;
  const out: number[] = [];
  const volume = (d: number[]): number => d.reduce((a, b) => a * b, 1);
  const P = volume(outSize);
  const Kv = volume(ks);
  const unflat = (i: number, dims: number[]): number[] => {
    const res = new Array<number>(dims.length);
    for (let d = dims.length - 1; d >= 0; d--) { res[d] = i % dims[d]; i = Math.floor(i / dims[d]); }
    return res;
  };
  for (let n = 0; n < N; n++)
    for (let oc = 0; oc < OC; oc++) {
      const g = Math.floor(oc / OCg);
      const m = Math.fround(Math.fround(xs * ws[ws.length === 1 ? 0 : oc]) / ys);
      for (let p = 0; p < P; p++) {
        const o = unflat(p, outSize);
        let acc = bias ? bias[oc] : 0;
        for (let c = 0; c < Cg; c++)
          for (let kk = 0; kk < Kv; kk++) {
            const kpos = unflat(kk, ks);
            const ipos = o.map((ov, d) => ov * strides[d] - padB[d] + kpos[d] * dil[d]);
            if (ipos.some((v, d) => v < 0 || v >= sp[d])) continue;
            let xi = n * C + g * Cg + c;
            for (let d = 0; d < r; d++) xi = xi * sp[d] + ipos[d];
            acc += (X[xi] - xz) * (W[(oc * Cg + c) * Kv + kk] - wz[wz.length === 1 ? 0 : oc]);
          }
        const v = Math.min(Math.max(Math.fround(Math.fround(acc) * m), qmin - yz), qmax - yz);
        out.push(rint(v) + yz);
      }
    }
  return out;
}

test('QLinearConv: 3-D, 1-D, per-channel weight zero points, dilation, SAME pads, groups, against a naive reference', () => {
  const r = new R(2);
  const cases = [
    { x: [1, 2, 4, 5, 6], w: [4, 2, 2, 3, 2], group: 1, strides: [1, 2, 1], dil: [1, 1, 2], pads: [1, 0, 1, 0, 1, 1] },
    { x: [2, 4, 11], w: [6, 2, 3], group: 2, strides: [2], dil: [2], pads: [2, 1] },
    { x: [1, 6, 7, 7], w: [6, 1, 3, 3], group: 6, strides: [1, 1], dil: [1, 1], pads: [1, 1, 1, 1] },
    { x: [1, 3, 6, 5], w: [5, 3, 3, 3], group: 1, strides: [2, 2], dil: [1, 1], pads: [], autoPad: 'SAME_LOWER' },
    // stride 1 with 4+ output channels per group: the im2row-free shifted-GEMM path (odd channel counts, dilation)
    { x: [2, 3, 7, 6], w: [5, 3, 3, 3], group: 1, strides: [1, 1], dil: [2, 1], pads: [], autoPad: 'SAME_UPPER' },
    { x: [1, 6, 5, 9], w: [10, 3, 2, 3], group: 2, strides: [1, 1], dil: [1, 2], pads: [0, 2, 1, 1] },
    { x: [2, 5, 13], w: [4, 5, 4], group: 1, strides: [1], dil: [1], pads: [1, 2] },
    { x: [1, 8, 4, 4], w: [16, 8, 1, 1], group: 1, strides: [1, 1], dil: [1, 1], pads: [0, 0, 0, 0] },
  ];
  bothPaths((mode) => {
  for (const c of cases) {
    const x = randT(r, 'uint8', c.x, 0, 255);
    const w = randT(r, 'uint8', c.w, 0, 255);
    const OC = c.w[0];
    const wsV = Array.from({ length: OC }, () => Math.fround(0.001 + r.float() * 0.01));
    const wzV = Array.from({ length: OC }, () => r.int(100, 156));
    const bias = Array.from({ length: OC }, () => r.int(-3000, 3000));
    const attrs: Record<string, Attr> = { group: int(c.group), strides: ints(c.strides), dilations: ints(c.dil) };
    let padB = c.pads.slice(0, c.strides.length);
    let outSize: number[];
    const sp = c.x.slice(2);
    const ks = c.w.slice(2);
    if (c.autoPad) {
      attrs.auto_pad = { type: 'string', value: c.autoPad };
      outSize = sp.map((s, d) => Math.ceil(s / c.strides[d]));
      padB = sp.map((s, d) => Math.ceil(Math.max(0, (outSize[d] - 1) * c.strides[d] + (ks[d] - 1) * c.dil[d] + 1 - s) / 2));
    } else {
      attrs.pads = ints(c.pads);
      const padE = c.pads.slice(c.strides.length);
      outSize = sp.map((s, d) => Math.floor((s + padB[d] + padE[d] - (ks[d] - 1) * c.dil[d] - 1) / c.strides[d]) + 1);
    }
    const [y] = run1('QLinearConv', ['x', 'xs', 'xz', 'w', 'ws', 'wz', 'ys', 'yz', 'B'], {
      x, xs: T('float32', [], [0.02]), xz: T('uint8', [], [131]), w, ws: T('float32', [OC], wsV), wz: T('uint8', [OC], wzV),
      ys: T('float32', [], [0.05]), yz: T('uint8', [], [120]), B: T('int32', [OC], bias),
    }, attrs);
    assert.deepEqual(y.dims, [c.x[0], OC, ...outSize]);
    const want = refQLinearConv(x, 0.02, 131, w, wsV, wzV, Math.fround(0.05), 120, bias, c.group, c.strides, c.dil, padB, outSize, 0, 255);
    assert.deepEqual(arr(y), want, `${mode}: x [${c.x}] w [${c.w}]`);
  }
  });
});

test('ConvInteger on both paths equals the naive accumulation', () => {
  const r = new R(9);
  const x = randT(r, 'int8', [2, 3, 6, 7], -128, 127);
  const w = randT(r, 'int8', [8, 3, 3, 3], -128, 127);
  const attrs = { pads: ints([1, 1, 1, 1]) };
  const acc: number[] = [];
  const X = arr(x), W = arr(w);
  for (let n = 0; n < 2; n++)
    for (let oc = 0; oc < 8; oc++)
      for (let oh = 0; oh < 6; oh++)
        for (let ow = 0; ow < 7; ow++) {
          let sum = 0;
          for (let c = 0; c < 3; c++)
            for (let kh = 0; kh < 3; kh++)
              for (let kw = 0; kw < 3; kw++) {
                const ih = oh + kh - 1, iw = ow + kw - 1;
                if (ih >= 0 && ih < 6 && iw >= 0 && iw < 7) sum += (X[((n * 3 + c) * 6 + ih) * 7 + iw] - 5) * (W[((oc * 3 + c) * 3 + kh) * 3 + kw] + 2);
              }
          acc.push(sum);
        }
  bothPaths((mode) => {
    const [y] = run1('ConvInteger', ['x', 'w', 'xz', 'wz'], { x, w, xz: T('int8', [], [5]), wz: T('int8', [], [-2]) }, attrs, 10);
    assert.equal(y.dtype, 'int32');
    assert.deepEqual(arr(y), acc, mode);
  });
});

test('wasm requantization equals the JS loops bit for bit, float and fixed point', { skip: wasmGemm() ? false : 'no WebAssembly SIMD' }, () => {
  const r = new R(10);
  const rows = 6, OH = 3, OW = 5, wp = 7, ldc = 24;
  for (const [dtype, zp, qmin, qmax] of [['uint8', 131, 0, 255], ['int8', -7, -128, 127]] as const)
    for (const fixedMode of [false, true, 'single'] as const)
      for (let rep = 0; rep < 20; rep++) {
        const mult = Float32Array.from({ length: rows }, () => Math.fround(2 ** (r.float() * 20 - 16)));
        const bias = Int32Array.from({ length: rows }, () => r.int(-100000, 100000));
        const q = Array.from(mult, (m) => quantizeMultiplier(rep % 2 ? m : m * 64)); // odd reps: left shifts too
        const fixed = fixedMode
          ? { multiplier: Int32Array.from(q, (v) => v.multiplier), shift: Int32Array.from(q, (v) => v.shift), single: fixedMode === 'single' }
          : undefined;
        const reg = wasmRegions([rows * ldc * 4, ...drainScratch(rows, OH * OW)]);
        assert.ok(reg);
        const C = new Int32Array(reg.memory, reg.offsets[0], rows * ldc);
        for (let i = 0; i < C.length; i++) C[i] = i % 11 === 0 ? r.int(-2147483648, 2147483647) : r.int(-3000000, 3000000);
        const jsC = C.slice();
        const make = (): Sink & { kind: 'q8' } => ({
          kind: 'q8', y: dtype === 'uint8' ? new Uint8Array(rows * OH * OW + 2) : new Int8Array(rows * OH * OW + 2),
          mult, bias, fixed, zp, qmin, qmax,
        });
        const viaWasm = make();
        const viaJs = make();
        drain(viaWasm, C, reg.offsets[0], ldc, wp, rows, OH, OW, 0, 2, reg.offsets.slice(1));
        drain(viaJs, jsC, -1, ldc, wp, rows, OH, OW, 0, 2, undefined);
        assert.deepEqual(arr({ dtype, dims: [], data: viaWasm.y }), arr({ dtype, dims: [], data: viaJs.y }), `${dtype} fixed=${fixedMode} rep ${rep}`);
      }
});

test('wasm float requantization rounds ties of acc * M half to even before adding an odd zero point', { skip: wasmGemm() ? false : 'no WebAssembly SIMD' }, () => {
  const rows = 1, OH = 1, OW = 8, ldc = 8;
  const reg = wasmRegions([rows * ldc * 4, ...drainScratch(rows, OH * OW)]);
  assert.ok(reg);
  const C = new Int32Array(reg.memory, reg.offsets[0], rows * ldc);
  C.set([1, 3, 5, 7, -1, -3, 69, 71]); // times 0.5: exact ties 0.5, 1.5, ... 34.5, 35.5
  const sink = (): Sink & { kind: 'q8' } => ({
    kind: 'q8', y: new Uint8Array(OW + 3), mult: Float32Array.of(0.5), bias: undefined, fixed: undefined, zp: 127, qmin: 0, qmax: 255,
  });
  const viaWasm = sink();
  const viaJs = sink();
  drain(viaWasm, C, reg.offsets[0], ldc, OW, rows, OH, OW, 0, 0, reg.offsets.slice(1));
  drain(viaJs, C.slice(), -1, ldc, OW, rows, OH, OW, 0, 0, undefined);
  const want = [0, 2, 2, 4, -0, -2, 34, 36].map((v) => v + 127);
  assert.deepEqual([...viaJs.y.subarray(0, OW)], want);
  assert.deepEqual([...viaWasm.y.subarray(0, OW)], want);
});

test('QLinearMatMul: per-row a scales and zero points, batch broadcast on both sides, against a naive reference', () => {
  const r = new R(3);
  const M = 3, K = 6, N = 4;
  const a = randT(r, 'int8', [2, 1, M, K], -128, 127);
  const b = randT(r, 'int8', [1, 3, K, N], -128, 127);
  const as = Array.from({ length: M }, () => Math.fround(0.01 + r.float() * 0.02));
  const az = [-5, 0, 7];
  const bs = Array.from({ length: N }, () => Math.fround(0.01 + r.float() * 0.02));
  const [y] = run1('QLinearMatMul', ['x', 'as', 'az', 'b', 'bs', 'bz', 'ys', 'yz'], {
    x: a, as: T('float32', [M], as), az: T('int8', [M], az), b, bs: T('float32', [N], bs), bz: T('int8', [N], [0, 0, 0, 0]),
    ys: T('float32', [], [0.1]), yz: T('int8', [], [3]),
  });
  assert.deepEqual(y.dims, [2, 3, M, N]);
  const A = arr(a), B = arr(b), got = arr(y);
  for (let p = 0; p < 2; p++)
    for (let q = 0; q < 3; q++)
      for (let m = 0; m < M; m++)
        for (let n = 0; n < N; n++) {
          let acc = 0;
          for (let k = 0; k < K; k++) acc += (A[(p * M + m) * K + k] - az[m]) * B[(q * K + k) * N + n];
          const mult = Math.fround(Math.fround(as[m] * bs[n]) / Math.fround(0.1));
          const v = Math.min(Math.max(Math.fround(acc * mult), -128 - 3), 127 - 3);
          assert.equal(got[((p * 3 + q) * M + m) * N + n], rint(v) + 3, `y[${p},${q},${m},${n}]`);
        }
});

test('QuantizeLinear: blocked scales, 4- and 16-bit outputs (output_dtype), NaN to the low end', () => {
  // x [2, 5], block_size 2 along axis 1: scale [2, 3]
  const x = T('float32', [2, 5], [1, 2, 3, 4, 5, -1, -2, -3, -4, -5]);
  const s = T('float32', [2, 3], [1, 2, 4, 0.5, 1, 2]);
  const [y] = run1('QuantizeLinear', ['x', 's', 'z'], { x, s, z: T('int8', [2, 3], [0, 1, 2, 0, 0, 0]) }, { axis: int(1), block_size: int(2) });
  // row 0: 1/1, 2/1, 3/2+1, 4/2+1, 5/4+2 ; row 1: -1/0.5, -2/0.5, -3/1, -4/1, -5/2
  assert.deepEqual(arr(y), [1, 2, 3, 3, 3, -2, -4, -3, -4, -2]);
  const x4 = T('float32', [4], [-20, -3.5, 2.5, 100]);
  const [q4] = run1('QuantizeLinear', ['x', 's'], { x: x4, s: T('float32', [], [1]) }, { output_dtype: int(22) });
  assert.equal(q4.dtype, 'int4');
  assert.deepEqual(arr(q4), [-8, -4, 2, 7]);
  const [q16] = run1('QuantizeLinear', ['x', 's', 'z'], { x: x4, s: T('float32', [], [0.001]), z: T('uint16', [], [30000]) });
  assert.equal(q16.dtype, 'uint16');
  assert.deepEqual(arr(q16), [10000, 26500, 32500, 65535]);
  const [qn] = run1('QuantizeLinear', ['x', 's', 'z'], { x: T('float32', [2], [NaN, 1]), s: T('float32', [], [1]), z: T('uint8', [], [10]) });
  assert.deepEqual(arr(qn), [0, 11]);
});

test('DequantizeLinear: int32 input, blocked scales, float16 scale', () => {
  const [y] = run1('DequantizeLinear', ['x', 's'], { x: T('int32', [3], [2 ** 30, -7, 0]), s: T('float32', [], [0.5]) });
  assert.deepEqual(arr(y), [2 ** 29, -3.5, 0]);
  const [b] = run1('DequantizeLinear', ['x', 's', 'z'], {
    x: T('int8', [1, 4], [10, 20, 30, 40]), s: T('float32', [1, 2], [0.5, 2]), z: T('int8', [1, 2], [0, 10]),
  }, { axis: int(1), block_size: int(2) });
  assert.deepEqual(arr(b), [5, 10, 40, 60]);
  const [h] = run1('DequantizeLinear', ['x', 's'], { x: T('uint8', [2], [3, 255]), s: { dtype: 'float16', dims: [], data: Uint16Array.of(0x3800) } });
  assert.equal(h.dtype, 'float16');
  assert.deepEqual(arr(h), [0x3e00, 0x57f8]); // 1.5 and 127.5 in binary16
  assert.throws(() => run1('DequantizeLinear', ['x', 's', 'z'], { x: T('int32', [1], [1]), s: T('float32', [], [1]), z: T('int32', [], [3]) }), /zero point/);
});

test('DynamicQuantizeLinear: all zeros and all-positive inputs', () => {
  const [y, s, z] = run1('DynamicQuantizeLinear', ['x'], { x: T('float32', [3], [0, 0, 0]) }, {}, 11, ['y', 's', 'z']);
  assert.deepEqual([arr(y), arr(s), arr(z)], [[0, 0, 0], [1], [0]]);
  const [y2, s2, z2] = run1('DynamicQuantizeLinear', ['x'], { x: T('float32', [3], [0.5, 1, 2.55]) }, {}, 11, ['y', 's', 'z']);
  assert.deepEqual(arr(z2), [0]);
  assert.equal(arr(s2)[0], Math.fround(Math.fround(2.55) / 255));
  assert.deepEqual(arr(y2), [50, 100, 255]);
});

test('MaxPool: Indices in column-major storage order; Clip with opset 6 attributes; Relu on int8', () => {
  const x = T('int8', [1, 1, 2, 3], [1, 9, 3, 4, 5, 6]);
  const [y, idx] = run1('MaxPool', ['x'], { x }, { kernel_shape: ints([2, 2]), storage_order: int(1) }, 12, ['y', 'i']);
  assert.deepEqual(arr(y), [9, 9]);
  // 9 is at (h 0, w 1): column-major index w * H + h = 2
  assert.deepEqual(Array.from(idx.data as BigInt64Array, Number), [2, 2]);
  const [c] = run1('Clip', ['x'], { x: T('int8', [4], [-100, -1, 5, 100]) }, { min: { type: 'float', value: -2 }, max: { type: 'float', value: 50 } }, 6);
  assert.deepEqual(arr(c), [-2, -1, 5, 50]);
  const [rl] = run1('Relu', ['x'], { x: T('int8', [3], [-128, 0, 127]) }, {}, 14);
  assert.deepEqual(arr(rl), [0, 0, 127]);
});
