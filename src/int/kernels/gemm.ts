// The one integer GEMM every matmul and convolution goes through:
// C[i, j] (+)= sum_k A[i, k] * B[j, k], A and B both row-major with K contiguous ("NT" form),
// operands already shifted by their zero points (int16 holds any 8-bit difference), int32 accumulators
// that wrap like int32 (ONNX: "accumulation may overflow if and only if in 32 bits").
// Blocked 2 rows x 4 columns: 8 accumulators in registers, 6 loads per 8 multiply-adds.

export function gemmNT(
  M: number, N: number, K: number,
  A: Int16Array, aOff: number,
  B: Int16Array, bOff: number,
  C: Int32Array, cOff: number, ldc: number,
  accumulate: boolean,
): void {
  let i = 0;
  for (; i + 2 <= M; i += 2) {
    const a0 = aOff + i * K;
    const a1 = a0 + K;
    const c0 = cOff + i * ldc;
    const c1 = c0 + ldc;
    let j = 0;
    for (; j + 4 <= N; j += 4) {
      const b0 = bOff + j * K;
      const b1 = b0 + K;
      const b2 = b1 + K;
      const b3 = b2 + K;
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      for (let k = 0; k < K; k++) {
        const x0 = A[a0 + k];
        const x1 = A[a1 + k];
        const y0 = B[b0 + k];
        const y1 = B[b1 + k];
        const y2 = B[b2 + k];
        const y3 = B[b3 + k];
        s00 = (s00 + Math.imul(x0, y0)) | 0;
        s01 = (s01 + Math.imul(x0, y1)) | 0;
        s02 = (s02 + Math.imul(x0, y2)) | 0;
        s03 = (s03 + Math.imul(x0, y3)) | 0;
        s10 = (s10 + Math.imul(x1, y0)) | 0;
        s11 = (s11 + Math.imul(x1, y1)) | 0;
        s12 = (s12 + Math.imul(x1, y2)) | 0;
        s13 = (s13 + Math.imul(x1, y3)) | 0;
      }
      if (accumulate) {
        C[c0 + j] += s00; C[c0 + j + 1] += s01; C[c0 + j + 2] += s02; C[c0 + j + 3] += s03;
        C[c1 + j] += s10; C[c1 + j + 1] += s11; C[c1 + j + 2] += s12; C[c1 + j + 3] += s13;
      } else {
        C[c0 + j] = s00; C[c0 + j + 1] = s01; C[c0 + j + 2] = s02; C[c0 + j + 3] = s03;
        C[c1 + j] = s10; C[c1 + j + 1] = s11; C[c1 + j + 2] = s12; C[c1 + j + 3] = s13;
      }
    }
    for (; j < N; j++) {
      const b0 = bOff + j * K;
      let s0 = 0, s1 = 0;
      for (let k = 0; k < K; k++) {
        const y = B[b0 + k];
        s0 = (s0 + Math.imul(A[a0 + k], y)) | 0;
        s1 = (s1 + Math.imul(A[a1 + k], y)) | 0;
      }
      if (accumulate) { C[c0 + j] += s0; C[c1 + j] += s1; } else { C[c0 + j] = s0; C[c1 + j] = s1; }
    }
  }
  for (; i < M; i++) {
    const a0 = aOff + i * K;
    const c0 = cOff + i * ldc;
    for (let j = 0; j < N; j++) {
      const b0 = bOff + j * K;
      let s = 0;
      for (let k = 0; k < K; k++) s = (s + Math.imul(A[a0 + k], B[b0 + k])) | 0;
      if (accumulate) C[c0 + j] += s;
      else C[c0 + j] = s;
    }
  }
}
