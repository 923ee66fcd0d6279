"""PyTorch side of bench/speed.ts: times the same kernels on the same machine.

Usage: /usr/bin/python3 bench/speed_peer.py [--reps N] [--threads T] [case ...]
Prints one JSON object {case: median_ms}. Cases mirror bench/speed.ts rows.
"""
import json
import sys
import time

import torch


def median_ms(fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def conv_setup(channels_last):
    x = torch.randn(8, 64, 56, 56)
    w = torch.randn(64, 64, 3, 3) * 0.05
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        w = w.contiguous(memory_format=torch.channels_last)
    y = torch.nn.functional.conv2d(x, w, padding=1)
    dy = torch.randn_like(y)
    return x, w, dy


def conv_bwd(x, w, dy, mask):
    return torch.ops.aten.convolution_backward(dy, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)


def make_cases():
    cases = {}
    for n in (512, 1024):
        a, b = torch.randn(n, n), torch.randn(n, n)
        cases[f'matmul_{n}'] = (lambda a=a, b=b: torch.mm(a, b))
    for cl, tag in ((False, ''), (True, '_cl')):
        x, w, dy = conv_setup(cl)
        cases['conv3x3_fwd' + tag] = (lambda x=x, w=w: torch.nn.functional.conv2d(x, w, padding=1))
        cases['conv3x3_bwd_input' + tag] = (lambda x=x, w=w, dy=dy: conv_bwd(x, w, dy, [True, False, False]))
        cases['conv3x3_bwd_filter' + tag] = (lambda x=x, w=w, dy=dy: conv_bwd(x, w, dy, [False, True, False]))
    xq = torch.randn(1 << 20)
    cases['fakequant_fwd_1M'] = (lambda: torch.fake_quantize_per_tensor_affine(xq, 0.05, 3, -128, 127))
    xg = xq.clone().requires_grad_(True)
    gy = torch.randn(1 << 20)

    def fq_bwd():
        y = torch.fake_quantize_per_tensor_affine(xg, 0.05, 3, -128, 127)
        (g,) = torch.autograd.grad(y, xg, gy)
        return g
    cases['fakequant_fwdbwd_1M'] = fq_bwd
    return cases


def main():
    args = sys.argv[1:]
    reps, threads, names = 10, 2, []
    i = 0
    while i < len(args):
        if args[i] == '--reps':
            reps = int(args[i + 1]); i += 2
        elif args[i] == '--threads':
            threads = int(args[i + 1]); i += 2
        else:
            names.append(args[i]); i += 1
    torch.set_num_threads(threads)
    cases = make_cases()
    out = {}
    with torch.no_grad():
        for name in (names or list(cases)):
            if name not in cases:
                continue
            fn = cases[name]
            if name.startswith('fakequant_fwdbwd'):
                with torch.enable_grad():
                    out[name] = median_ms(fn, reps)
            else:
                out[name] = median_ms(fn, reps)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
