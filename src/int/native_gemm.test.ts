// The native int8 GEMM provider (native_gemm.ts -> native/int8_gemm.cc) against the engine's wasm and plain JS paths:
// bit-identical QLinearConv / ConvInteger / QGemm / QLinearMatMul / MatMulInteger outputs on random cases (odd
// sizes, groups, strides, pads, dilations, per-channel weight scales and zero points, zero points at the extremes,
// int8 and uint8 operands), and exact sums at 255 x -128 (no vpmaddubsw-style int16 saturation). Skipped when the
// addon is not built (or predates int8 GEMM).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type Attr, type DType, type Graph, type TensorData, elementCount } from '../graph/ir.js';
import { loadAddon } from '../backend/native_addon.js';
import { createIntSession } from './engine.js';
import { type IntGemmProvider, setIntGemmProvider } from './kernels/gemm.js';
import { setIntWasm } from './kernels/wasm_gemm.js';
import { enableNativeIntGemm, nativeIntGemmProvider } from './native_gemm.js';
import type { Requant } from './registry.js';
import { TestRng as R } from './test_util.js';

const { provider: found, why } = nativeIntGemmProvider();
let nativeCalls = 0;
// counts its calls, so that the comparisons below are known to have gone through it
const native: IntGemmProvider | null = found && {
  name: found.name,
  packB: found.packB,
  gemmU8: (...args) => {
    nativeCalls++;
    found.gemmU8(...args);
  },
  conv2dU8: found.conv2dU8 && ((...args) => {
    nativeCalls++;
    found.conv2dU8!(...args);
  }),
};
// the same without the fused convolution: convs go through im2row + gemmU8
const gemmOnly: IntGemmProvider | null = native && { name: 'gemm-only', packB: native.packB, gemmU8: native.gemmU8 };
// everything the addon offers, its fused kernels (native/int8_ops.cc) counted by name
const fusedCalls: Record<string, number> = {};
const counted = <F extends (...a: never[]) => void>(name: string, f: F | undefined): F | undefined =>
  f && (((...a: Parameters<F>) => {
    fusedCalls[name] = (fusedCalls[name] ?? 0) + 1;
    f(...a);
  }) as F);
const fusedNative: IntGemmProvider | null = found && {
  ...found,
  name: 'fused',
  qconv: counted('qconv', found.qconv),
  requant: counted('requant', found.requant),
  quantize: counted('quantize', found.quantize),
  maxPool: counted('maxPool', found.maxPool),
  qadd: counted('qadd', found.qadd),
  planeSums: counted('planeSums', found.planeSums),
};
const skip = native ? false : `native int8 GEMM unavailable: ${why}`;
// importing native_gemm.ts registered it; each test picks the path itself
setIntGemmProvider(null);


const range = (dt: DType): [number, number] => (dt === 'int8' ? [-128, 127] : [0, 255]);

const T = (dtype: DType, dims: number[], vals: ArrayLike<number>): TensorData => {
  const data = dtype === 'uint8' ? Uint8Array.from(vals) : dtype === 'int8' ? Int8Array.from(vals)
    : dtype === 'int32' ? Int32Array.from(vals) : Float32Array.from(vals);
  assert.equal(data.length, elementCount(dims));
  return { dtype, dims, data };
};

/** Values of dtype, a share of them at the extremes. */
function values(r: R, dt: DType, n: number, extreme = 0.2): number[] {
  const [lo, hi] = range(dt);
  return Array.from({ length: n }, () => (r.float() < extreme ? (r.float() < 0.5 ? lo : hi) : r.int(lo, hi)));
}

/** A zero point: often an extreme of the type. */
const zeroPoint = (r: R, dt: DType): number => {
  const [lo, hi] = range(dt);
  return r.pick([lo, hi, r.int(lo, hi), r.int(lo, hi)]);
};

function graph(op: string, domain: string, inputs: string[], x: TensorData, inits: Record<string, TensorData>, outDtype: DType, attrs: Record<string, Attr> = {}): Graph {
  return {
    name: op,
    nodes: [{ name: 'n0', op, domain, inputs, outputs: ['y'], attrs }],
    inputs: [{ name: 'x', dtype: x.dtype, shape: x.dims }],
    outputs: [{ name: 'y', dtype: outDtype }],
    initializers: new Map(Object.entries(inits)),
    opsets: domain ? { '': 17, [domain]: 1 } : { '': 17 },
  };
}

/** y with the given provider (null: wasm when `wasm`, else plain JS). */
function runWith(g: Graph, x: TensorData, p: IntGemmProvider | null, wasm: boolean, requant: Requant): TensorData {
  const prevP = setIntGemmProvider(p);
  const prevW = setIntWasm(wasm);
  try {
    return createIntSession(g, { requant }).run({ x }).y;
  } finally {
    setIntGemmProvider(prevP);
    setIntWasm(prevW);
  }
}

let compared = 0;
/** The native provider's results (GEMM only, and with its fused kernels) equal the wasm, JS and im2row paths. */
function same(g: Graph, x: TensorData, what: string, modes: Requant[] = ['float', 'fixedpoint', 'fixedpoint-single']): void {
  for (const requant of modes) {
    const nats = [runWith(g, x, native, true, requant), runWith(g, x, fusedNative, true, requant)];
    for (const [wasm, p] of [[true, null], [false, null], [true, gemmOnly]] as const) {
      const ref = runWith(g, x, p, wasm, requant);
      for (const [k, nat] of nats.entries()) {
        assert.deepEqual(nat.dims, ref.dims, what);
        assert.equal(nat.dtype, ref.dtype, what);
        const a = nat.data, b = ref.data;
        for (let i = 0; i < a.length; i++) {
          if (a[i] === b[i] || (Number.isNaN(a[i]) && Number.isNaN(b[i]))) continue;
          assert.fail(`${what} (${requant}, ${k ? 'fused' : 'gemm'} vs ${p ? p.name : wasm ? 'wasm' : 'js'}): element ${i}: native ${a[i]}, reference ${b[i]}`);
        }
        compared += a.length;
      }
    }
  }
}

/** g with a Clip of constant bounds [lo, hi] (dtype dt) after its node, which the engine folds into it. */
function withClip(g: Graph, lo: number, hi: number, dt: DType): Graph {
  const n = g.nodes[0];
  return {
    ...g,
    nodes: [{ ...n, outputs: ['q'] }, { name: 'clip', op: 'Clip', domain: '', inputs: ['q', 'lo', 'hi'], outputs: ['y'], attrs: {} }],
    initializers: new Map([...g.initializers, ['lo', T(dt, [], [lo])], ['hi', T(dt, [], [hi])]]),
  };
}

function convCase(r: R, rep: number, op: 'QLinearConv' | 'ConvInteger', batch?: number): { g: Graph; x: TensorData; what: string } {
  const xT: DType = rep % 3 === 0 ? 'int8' : 'uint8';
  const wT: DType = rep % 5 === 4 ? 'uint8' : 'int8';
  const rank = rep % 7 === 6 ? 1 : 2;
  const group = r.pick([1, 1, 1, 2, 3]);
  const depthwise = rep % 9 === 8;
  const Cg = depthwise ? 1 : r.int(1, 5);
  const C = Cg * (depthwise ? r.int(2, 6) : group);
  const g0 = depthwise ? C : group;
  const OC = g0 * (depthwise ? 1 : r.int(1, 7)) * (rep % 4 === 0 ? 3 : 1);
  const N = batch ?? r.int(1, 3);
  const k = Array.from({ length: rank }, () => r.int(1, 5));
  const sp = Array.from({ length: rank }, (_, i) => k[i] + r.int(0, 9));
  const strides = Array.from({ length: rank }, () => r.pick([1, 1, 2, 3]));
  const dil = Array.from({ length: rank }, () => (rep % 6 === 5 ? 2 : 1));
  const pads = Array.from({ length: 2 * rank }, () => r.int(0, 2));
  // keep the dilated window within the padded input
  for (let i = 0; i < rank; i++) sp[i] = Math.max(sp[i], (k[i] - 1) * dil[i] + 1);
  const x = T(xT, [N, C, ...sp], values(r, xT, N * C * sp.reduce((a, b) => a * b, 1)));
  const K = (C / g0) * k.reduce((a, b) => a * b, 1);
  const wdims = [OC, C / g0, ...k];
  const w = T(wT, wdims, values(r, wT, OC * K));
  const perCh = rep % 2 === 0;
  const wzp = T(wT, perCh ? [OC] : [], Array.from({ length: perCh ? OC : 1 }, () => zeroPoint(r, wT)));
  const attrs: Record<string, Attr> = {
    group: { type: 'int', value: g0 }, strides: { type: 'ints', value: strides }, dilations: { type: 'ints', value: dil },
    pads: { type: 'ints', value: pads }, kernel_shape: { type: 'ints', value: k },
  };
  const xzp = T(xT, [], [zeroPoint(r, xT)]);
  const what = `${op} #${rep}: x ${xT} [${x.dims}], w ${wT} [${wdims}], group ${g0}, strides ${strides}, pads ${pads}, dil ${dil}`;
  if (op === 'ConvInteger')
    return { g: graph(op, '', ['x', 'w', 'xzp', 'wzp'], x, { w, xzp, wzp }, 'int32', attrs), x, what };
  const yT: DType = rep % 4 === 1 ? 'int8' : 'uint8';
  const inits: Record<string, TensorData> = {
    xs: T('float32', [], [0.02 + r.float() * 0.05]), xzp, w,
    ws: T('float32', perCh ? [OC] : [], Array.from({ length: perCh ? OC : 1 }, () => 0.001 + r.float() * 0.02)), wzp,
    ys: T('float32', [], [0.05 + r.float() * 0.5]), yzp: T(yT, [], [zeroPoint(r, yT)]),
    b: T('int32', [OC], Array.from({ length: OC }, () => r.int(-20000, 20000))),
  };
  return { g: graph(op, '', ['x', 'xs', 'xzp', 'w', 'ws', 'wzp', 'ys', 'yzp', ...(rep % 3 === 2 ? [] : ['b'])], x, inits, yT, attrs), x, what };
}

test('native int8 GEMM: QLinearConv and ConvInteger equal the wasm and JS paths bit for bit', { skip }, () => {
  const r = new R(7);
  for (let rep = 0; rep < 60; rep++) {
    const c = convCase(r, rep, rep % 4 === 3 ? 'ConvInteger' : 'QLinearConv');
    same(c.g, c.x, c.what);
  }
});

test('native int8 GEMM: QGemm, QLinearMatMul and MatMulInteger equal the wasm and JS paths bit for bit', { skip }, () => {
  const r = new R(11);
  for (let rep = 0; rep < 48; rep++) {
    const aT: DType = rep % 3 === 0 ? 'int8' : 'uint8';
    const bT: DType = rep % 5 === 4 ? 'uint8' : 'int8';
    const M = r.pick([1, 2, 3, 5, 7, 13, 64]), K = r.pick([1, 2, 3, 7, 16, 31, 33, 100]), N = r.pick([1, 3, 8, 9, 17, 31]);
    const perCol = rep % 2 === 0;
    const kind = rep % 3;
    if (kind === 0) {
      const transA = rep % 4 === 0, transB = rep % 5 < 3;
      const x = T(aT, transA ? [K, M] : [M, K], values(r, aT, M * K));
      const inits: Record<string, TensorData> = {
        as: T('float32', [], [0.03]), azp: T(aT, [], [zeroPoint(r, aT)]),
        b: T(bT, transB ? [N, K] : [K, N], values(r, bT, K * N)),
        bs: T('float32', perCol ? [N] : [], Array.from({ length: perCol ? N : 1 }, () => 0.001 + r.float() * 0.02)),
        bzp: T(bT, perCol ? [N] : [], Array.from({ length: perCol ? N : 1 }, () => zeroPoint(r, bT))),
        c: T('int32', [N], Array.from({ length: N }, () => r.int(-5000, 5000))),
        ys: T('float32', [], [0.05 + r.float() * 0.3]), yzp: T(aT, [], [zeroPoint(r, aT)]),
      };
      const attrs: Record<string, Attr> = { transA: { type: 'int', value: transA ? 1 : 0 }, transB: { type: 'int', value: transB ? 1 : 0 } };
      const ins = ['x', 'as', 'azp', 'b', 'bs', 'bzp', 'c', ...(rep % 4 === 3 ? [] : ['ys', 'yzp'])];
      same(graph('QGemm', 'com.microsoft', ins, x, inits, rep % 4 === 3 ? 'float32' : aT, attrs), x, `QGemm #${rep} ${aT}x${bT} ${M}x${K}x${N}`);
    } else {
      const batch = rep % 4 === 1 ? [2] : [];
      const x = T(aT, [...batch, M, K], values(r, aT, elementCount(batch) * M * K));
      const b = T(bT, [K, N], values(r, bT, K * N));
      const bzp = T(bT, perCol ? [N] : [], Array.from({ length: perCol ? N : 1 }, () => zeroPoint(r, bT)));
      const azp = T(aT, [], [zeroPoint(r, aT)]);
      if (kind === 1) {
        same(graph('MatMulInteger', '', ['x', 'b', 'azp', 'bzp'], x, { b, azp, bzp }, 'int32'), x, `MatMulInteger #${rep} ${aT}x${bT} ${M}x${K}x${N}`);
      } else {
        const yT: DType = rep % 2 ? 'int8' : 'uint8';
        const inits: Record<string, TensorData> = {
          as: T('float32', [], [0.03]), azp, b, bzp,
          bs: T('float32', perCol ? [N] : [], Array.from({ length: perCol ? N : 1 }, () => 0.001 + r.float() * 0.02)),
          ys: T('float32', [], [0.05 + r.float() * 0.3]), yzp: T(yT, [], [zeroPoint(r, yT)]),
        };
        same(graph('QLinearMatMul', '', ['x', 'as', 'azp', 'b', 'bs', 'bzp', 'ys', 'yzp'], x, inits, yT), x, `QLinearMatMul #${rep} ${aT}x${bT} ${M}x${K}x${N}`);
      }
    }
  }
  assert.ok(compared > 10000);
  assert.ok(nativeCalls > 100, `native provider called ${nativeCalls} times`);
});

test('native int8 GEMM: 255 x -128 sums are exact (no int16 saturation), raw addon entry points included', { skip }, () => {
  const addon = loadAddon();
  for (const K of [1, 2, 15, 16, 17, 63, 64, 65, 127, 1000, 4097]) {
    const M = 7, N = 9;
    // MatMulInteger, zero points 0: every product 255 * -128
    const x = T('uint8', [M, K], new Array(M * K).fill(255));
    const g = graph('MatMulInteger', '', ['x', 'b'], x, { b: T('int8', [K, N], new Array(K * N).fill(-128)) }, 'int32');
    const y = runWith(g, x, native, true, 'float').data as Int32Array;
    assert.ok(y.every((v) => v === -255 * 128 * K), `MatMulInteger K=${K}: ${y[0]} != ${-255 * 128 * K}`);
    // (0 - 255) x (-128 - 127): the largest magnitude of the shifted operands
    const g2 = graph('MatMulInteger', '', ['x', 'b', 'azp', 'bzp'], T('uint8', [M, K], new Array(M * K).fill(0)),
      { b: T('int8', [K, N], new Array(K * N).fill(-128)), azp: T('uint8', [], [255]), bzp: T('int8', [], [127]) }, 'int32');
    const y2 = runWith(g2, T('uint8', [M, K], new Array(M * K).fill(0)), native, true, 'float').data as Int32Array;
    assert.ok(y2.every((v) => v === 255 * 255 * K), `shifted K=${K}: ${y2[0]}`);
    // the colleague's unpacked qk_gemm_u8s8 (int8Gemm) and the packed kernel directly
    const A = new Uint8Array(M * K).fill(255), B = new Int8Array(N * K).fill(-128), C = new Int32Array(M * N);
    addon.int8Gemm!(A, 0, B, null, null, M, N, K, C);
    assert.ok(C.every((v) => v === -255 * 128 * K), `int8Gemm K=${K}: ${C[0]}`);
    addon.int8Gemm!(A, 3, B, Int32Array.from({ length: N }, (_, n) => n - 4), Int32Array.from({ length: N }, (_, n) => n), M, N, K, C);
    for (let n = 0; n < N; n++) assert.equal(C[n], (255 - 3) * (-128 - (n - 4)) * K + n, `int8Gemm zero points K=${K}`);
    const Bp = native!.packB(Int16Array.from(B), 0, K, N, K);
    C.fill(7);
    addon.int8GemmPacked!(A, K, Int32Array.of(0), Bp.data as Uint8Array, M, N, K, C, M, true);
    assert.ok(C.every((v) => v === -255 * 128 * K), `int8GemmPacked K=${K}: ${C[0]}`);
    // shifted operands at both ends: (0 - 255) x (B' = -128 - 127)
    const Bs = native!.packB(new Int16Array(N * K).fill(-255), 0, K, N, K);
    addon.int8GemmPacked!(new Uint8Array(M * K), K, 255, Bs.data as Uint8Array, M, N, K, C, N, false);
    assert.ok(C.every((v) => v === 255 * 255 * K), `int8GemmPacked shifted K=${K}: ${C[0]}`);
    C.fill(7);
    addon.int8GemmPacked!(A, K, Int32Array.of(0), Bp.data as Uint8Array, M, N, K, C, M, true);
    assert.ok(C.every((v) => v === -255 * 128 * K), `int8GemmPacked K=${K}: ${C[0]}`);
  }
});

test('native int8 GEMM: several threads and the generic (non-SIMD) kernel give the same results', { skip }, () => {
  const addon = loadAddon();
  const before = addon.info().threads;
  const r = new R(3);
  try {
    for (const threads of [1, 3]) {
      addon.setThreads(threads);
      for (let rep = 0; rep < 12; rep++) {
        const c = convCase(r, rep, 'QLinearConv', rep % 2 ? 8 : undefined);
        same(c.g, c.x, `${c.what}, ${threads} threads`, ['float', 'fixedpoint-single']);
      }
    }
  } finally {
    addon.setThreads(before);
  }
  // the ISA is chosen at load time: run the comparisons in children with QK_INT8_ISA=avx2 and generic
  const self = fileURLToPath(import.meta.url);
  for (const isa of ['avx2', 'generic']) {
    const env: Record<string, string | undefined> = { ...process.env, QK_INT8_ISA: isa, QATKIT_INT8_CHILD: isa };
    delete env.NODE_TEST_CONTEXT; // a plain TAP report from the child, not the parent runner's protocol
    const res = spawnSync(process.execPath, ['--test', '--test-name-pattern', 'bit for bit|registers|255|fused kernels', self], { env, encoding: 'utf8' });
    assert.equal(res.status, 0, res.stdout + res.stderr);
    assert.match(res.stdout, /# pass 5/, res.stdout);
  }
});

test('native fused kernels: convolutions with folded clamps, QLinearAdd, QuantizeLinear, MaxPool, QLinearGlobalAveragePool', { skip }, () => {
  const r = new R(29);
  const q8: DType[] = ['int8', 'uint8'];
  for (let rep = 0; rep < 16; rep++) {
    // QLinearConv with a folded Clip (a ReLU at the zero point, or a sub-8-bit grid)
    const c = convCase(r, rep % 4 === 3 ? rep + 1 : rep, 'QLinearConv');
    const yT = c.g.outputs[0].dtype;
    const [lo, hi] = yT === 'int8' ? [r.int(-128, 0), r.int(1, 127)] : [r.int(0, 100), r.int(101, 255)];
    same(withClip(c.g, lo, hi, yT), c.x, `${c.what}, clip [${lo}, ${hi}]`);

    // QLinearAdd: same shapes, scales from far apart to near, saturating sums
    const dt = q8[rep % 2];
    const [qlo, qhi] = range(dt);
    const dims = [r.int(1, 3), r.int(1, 17), r.int(1, 9)];
    const n = elementCount(dims);
    const a = T(dt, dims, values(r, dt, n, 0.3));
    const sA = 0.001 + r.float() * 0.1;
    const addInits: Record<string, TensorData> = {
      as: T('float32', [], [sA]), azp: T(dt, [], [zeroPoint(r, dt)]), b: T(dt, dims, values(r, dt, n, 0.3)),
      bs: T('float32', [], [sA * r.pick([1, 0.5, 3, 0.01, 17])]), bzp: T(dt, [], [zeroPoint(r, dt)]),
      cs: T('float32', [], [sA * r.pick([0.3, 1, 2.5, 40])]), czp: T(dt, [], [zeroPoint(r, dt)]),
    };
    // b as a second feed would leave the add unfused: a constant operand of the same shape keeps it elementwise
    const add = graph('QLinearAdd', 'com.microsoft', ['x', 'as', 'azp', 'b', 'bs', 'bzp', 'cs', 'czp'], a, addInits, dt);
    same(rep % 3 ? add : withClip(add, qlo + 5, qhi - 9, dt), a, `QLinearAdd #${rep} ${dt} [${dims}]`);

    // QuantizeLinear per tensor, NaN, infinities and out-of-range values included
    const f = T('float32', dims, Array.from({ length: n }, () =>
      r.pick([NaN, Infinity, -Infinity, 1e30, -1e30, 0.5, -2.5, r.float() * 20 - 10, r.float() * 2000 - 1000])));
    const qz = graph('QuantizeLinear', '', ['x', 's', 'z'], f, { s: T('float32', [], [0.01 + r.float()]), z: T(dt, [], [zeroPoint(r, dt)]) }, dt);
    same(rep % 3 ? qz : withClip(qz, qlo + 3, qhi - 3, dt), f, `QuantizeLinear #${rep} ${dt}`);

    // MaxPool 2-D: 2 x 2 stride 2 (the SIMD path) and random windows with pads, dilations, ceil_mode
    const fast = rep % 2 === 0;
    const kernel = fast ? [2, 2] : [r.int(1, 4), r.int(1, 4)];
    const dil = fast ? [1, 1] : [r.int(1, 2), r.int(1, 2)];
    const pads = fast ? [0, 0, 0, 0] : [r.int(0, kernel[0] - 1), r.int(0, kernel[1] - 1), r.int(0, kernel[0] - 1), r.int(0, kernel[1] - 1)];
    const sp = [r.int((kernel[0] - 1) * dil[0] + 1, 40), r.int((kernel[1] - 1) * dil[1] + 1, 40)];
    const pdims = [r.int(1, 2), r.int(1, 5), ...sp];
    const xp = T(dt, pdims, values(r, dt, elementCount(pdims)));
    const poolAttrs: Record<string, Attr> = {
      kernel_shape: { type: 'ints', value: kernel }, strides: { type: 'ints', value: fast ? [2, 2] : [r.int(1, 3), r.int(1, 3)] },
      dilations: { type: 'ints', value: dil }, pads: { type: 'ints', value: pads }, ceil_mode: { type: 'int', value: rep % 4 === 1 ? 1 : 0 },
    };
    same(graph('MaxPool', '', ['x'], xp, {}, dt, poolAttrs), xp, `MaxPool #${rep} ${dt} [${xp.dims}] ${JSON.stringify(poolAttrs)}`, ['float']);

    // QLinearGlobalAveragePool
    const gdims = [r.int(1, 3), r.int(1, 20), r.int(1, 9), r.int(1, 9)];
    const gx = T(dt, gdims, values(r, dt, elementCount(gdims)));
    const gapInits = { xs: T('float32', [], [0.05]), xzp: T(dt, [], [zeroPoint(r, dt)]), ys: T('float32', [], [0.01 + r.float() * 0.1]), yzp: T(dt, [], [zeroPoint(r, dt)]) };
    same(graph('QLinearGlobalAveragePool', 'com.microsoft', ['x', 'xs', 'xzp', 'ys', 'yzp'], gx, gapInits, dt), gx, `QLinearGlobalAveragePool #${rep} ${dt} [${gx.dims}]`);
  }
  if (loadAddon().int8OpsAvailable?.())
    for (const op of ['qconv', 'requant', 'quantize', 'maxPool', 'qadd', 'planeSums']) assert.ok((fusedCalls[op] ?? 0) > 10, `${op} called ${fusedCalls[op]} times`);
});

test('native int8 GEMM: enableNativeIntGemm registers and removes the provider', { skip }, () => {
  assert.equal(enableNativeIntGemm(true), true);
  assert.equal(enableNativeIntGemm(false), false);
  const child = process.env.QATKIT_INT8_CHILD;
  // avx2 stands for the AVX2 kernel where the CPU has it, the portable one elsewhere
  if (child === 'generic') assert.equal(loadAddon().int8Info!().packedIsa, 'generic');
  if (child === 'avx2') assert.match(loadAddon().int8Info!().packedIsa, /^(avx2|generic)$/);
});
