"""PyTorch side of bench/speed.ts: times the same kernels on the same machine.

Usage: /usr/bin/python3 bench/speed_peer.py [--reps N] [--threads T] [case ...]
  prints one JSON object {case: median_ms}.
       /usr/bin/python3 bench/speed_peer.py --serve [--threads T]
  reads lines "case reps" on stdin and answers each with a JSON line {"case", "ms"}
  (ms null for an unknown case), so speed.ts can alternate ours/peer row by row.
Cases mirror bench/speed.ts rows; conv cases come in NCHW (default) and channels_last ("_cl").
"""
import json
import sys
import time

import torch


def median_ms(fn, reps, warmup_ms=0.0):
    # at least 3 warm-up runs lasting at least warmup_ms (the same rule as bench/speed.ts)
    w0, i = time.perf_counter(), 0
    while i < 3 or (time.perf_counter() - w0) * 1e3 < warmup_ms:
        fn()
        i += 1
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


# ---- model rows: must mirror src/zoo/models.ts (lenet5, resnet8) and bench/speed_models.ts

def lenet5():
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


class Block(torch.nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        nn = torch.nn
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        self.add = torch.nn.quantized.FloatFunctional()

    def forward(self, x):
        y = self.b2(self.c2(self.relu1(self.b1(self.c1(x)))))
        return self.relu2(self.add.add(y, x if self.short is None else self.short(x)))


def resnet8(width=16):
    nn = torch.nn
    layers = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    cin = width
    for stage in range(3):
        cout = width << stage
        layers.append(Block(cin, cout, 2 if stage > 0 else 1))
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
    return nn.Sequential(*layers)


def qat_w4a8(model, example):
    """PyTorch eager QAT: per-channel symmetric 4-bit weights, 8-bit activations, observers then frozen."""
    q = torch.ao.quantization
    qconfig = q.QConfig(
        activation=q.FakeQuantize.with_args(observer=q.MovingAverageMinMaxObserver, quant_min=0, quant_max=255),
        weight=q.FakeQuantize.with_args(observer=q.MovingAveragePerChannelMinMaxObserver, quant_min=-8, quant_max=7,
                                        dtype=torch.qint8, qscheme=torch.per_channel_symmetric))
    model = torch.nn.Sequential(q.QuantStub(), model)
    model.qconfig = qconfig
    model.train()
    q.prepare_qat(model, inplace=True)
    with torch.no_grad():
        model(example)
    model.apply(q.disable_observer)
    return model


def train_step_case(build, shape, batch, qat):
    model = build()
    x = torch.randn(batch, *shape)
    y = torch.arange(batch) % 10
    if qat:
        model = qat_w4a8(model, x)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        with torch.enable_grad():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            return loss.item()
    return step


def make_cases():
    cases = {}
    cases['lenet5_train_float'] = train_step_case(lenet5, (1, 28, 28), 64, False)
    cases['lenet5_train_w4a8'] = train_step_case(lenet5, (1, 28, 28), 64, True)
    cases['resnet8_train_float'] = train_step_case(resnet8, (3, 32, 32), 32, False)
    cases['resnet8_train_w4a8'] = train_step_case(resnet8, (3, 32, 32), 32, True)
    for n in (512, 1024):
        a, b = torch.randn(n, n), torch.randn(n, n)
        cases[f'matmul_{n}'] = (lambda a=a, b=b: torch.mm(a, b))
    for cl, tag in ((False, ''), (True, '_cl')):
        x, w, dy = conv_setup(cl)
        cases['conv3x3_fwd' + tag] = (lambda x=x, w=w: torch.nn.functional.conv2d(x, w, padding=1))
        cases['conv3x3_bwd_input' + tag] = (lambda x=x, w=w, dy=dy: conv_bwd(x, w, dy, [True, False, False]))
        cases['conv3x3_bwd_filter' + tag] = (lambda x=x, w=w, dy=dy: conv_bwd(x, w, dy, [False, True, False]))
    for cl, tag in ((False, ''), (True, '_cl')):
        xb = torch.randn(32, 16, 32, 32)
        if cl:
            xb = xb.contiguous(memory_format=torch.channels_last)
        xb.requires_grad_(True)
        gb = torch.ones(16, requires_grad=True)
        bb = torch.zeros(16, requires_grad=True)
        dyb = torch.randn_like(xb)

        def bn_step(xb=xb, gb=gb, bb=bb, dyb=dyb):
            with torch.enable_grad():
                y = torch.nn.functional.batch_norm(xb, None, None, gb, bb, training=True, eps=1e-5)
                return torch.autograd.grad(y, (xb, gb, bb), dyb)
        cases['bn_train_fwdbwd' + tag] = bn_step
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


def timed(cases, name, reps, warmup_ms=0.0):
    fn = cases.get(name)
    if fn is None:
        return None
    if name.startswith('fakequant_fwdbwd'):
        with torch.enable_grad():
            return median_ms(fn, reps, warmup_ms)
    return median_ms(fn, reps, warmup_ms)


def serve(threads):
    torch.set_num_threads(threads)
    cases = make_cases()
    with torch.no_grad():
        for line in sys.stdin:
            parts = line.split()
            if not parts:
                continue
            name, reps = parts[0], int(parts[1]) if len(parts) > 1 else 10
            warmup_ms = float(parts[2]) if len(parts) > 2 else 0.0
            print(json.dumps({'case': name, 'ms': timed(cases, name, reps, warmup_ms)}), flush=True)


def main():
    args = sys.argv[1:]
    if '--serve' in args:
        t = args.index('--threads') if '--threads' in args else -1
        serve(int(args[t + 1]) if t >= 0 else 2)
        return
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
            if name in cases:
                out[name] = timed(cases, name, reps)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
