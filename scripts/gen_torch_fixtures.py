#!/usr/bin/env python3
"""Reference numbers from PyTorch for the tests in src/quant.

Writes test/fixtures/torch/{qparams,fake_quant,learnable,observers}.json: fixed inputs together with
what PyTorch's own ops and observers return for them (forward values, gradients, qparams).
The TypeScript tests compare against these element for element.

Usage: /usr/bin/python3 scripts/gen_torch_fixtures.py [--out DIR]   (default: test/fixtures/torch)
"""
import argparse
import json
import math
import os

import torch
from torch.ao.quantization.observer import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
)

EPS = torch.finfo(torch.float32).eps


def flat(t):
    """float32 values as Python floats (exact: every float32 is a double)."""
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def qrange(bits, signed, narrow):
    if signed:
        qmax = 2 ** (bits - 1) - 1
        return (-qmax if narrow else -qmax - 1), qmax
    return 0, 2 ** bits - 1


def spec_of(bits, signed, symmetric, narrow):
    return {"bits": bits, "signed": signed, "symmetric": symmetric, "narrowRange": narrow}


def make_observer(cls, spec, **kw):
    """A torch observer with the grid of `spec`. Unsigned symmetric only exists in torch with the default
    8-bit range (its zero point is 128 then; with a customized range torch takes (qmin+qmax)//2 instead)."""
    qmin, qmax = qrange(spec["bits"], spec["signed"], spec["narrowRange"])
    per_channel = "ch_axis" in kw
    if spec["symmetric"]:
        qscheme = torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric
    else:
        qscheme = torch.per_channel_affine if per_channel else torch.per_tensor_affine
    dtype = torch.qint8 if spec["signed"] else torch.quint8
    if not spec["signed"] and spec["symmetric"]:
        assert spec["bits"] == 8, "torch has no matching unsigned symmetric grid below 8 bits"
        return cls(dtype=dtype, qscheme=qscheme, **kw)
    return cls(dtype=dtype, qscheme=qscheme, quant_min=qmin, quant_max=qmax, **kw)


def all_specs():
    out = []
    for bits in range(2, 9):
        for signed, symmetric, narrow in [
            (True, True, False), (True, True, True), (True, False, False), (False, False, False),
        ]:
            out.append(spec_of(bits, signed, symmetric, narrow))
    out.append(spec_of(8, False, True, False))
    return out


# ---- qparams ---------------------------------------------------------------------------------------

def gen_qparams(g):
    ranges = [
        (0.0, 0.0), (-1e-9, 1e-9), (0.0, 1e-30), (-1.0, 1.0), (-0.7, 0.3), (-3.0, -1.0), (1.0, 5.0),
        (-0.1, 12.5), (-100.25, 3.0), (0.5, 0.5), (-2.5, -2.5), (-1.2345678, 0.987654),
    ]
    ranges += [tuple(sorted((torch.randn(2, generator=g) * 4).tolist())) for _ in range(4)]
    cases = []
    for spec in all_specs():
        obs = make_observer(MinMaxObserver, spec)
        mins = torch.tensor([r[0] for r in ranges], dtype=torch.float32)
        maxs = torch.tensor([r[1] for r in ranges], dtype=torch.float32)
        # _calculate_qparams is what every torch observer calls; it takes per-channel vectors as well.
        scale, zp = obs._calculate_qparams(mins, maxs)
        cases.append({
            "spec": spec, "qmin": obs.quant_min, "qmax": obs.quant_max,
            "min": flat(mins), "max": flat(maxs), "scale": flat(scale), "zero_point": [int(v) for v in zp.tolist()],
        })
    return {"eps": EPS, "cases": cases}


# ---- fake quant (non-learnable) --------------------------------------------------------------------

def fq_tensor_case(name, x, scale, zp, qmin, qmax, g):
    x = x.clone().float().requires_grad_(True)
    dy = torch.randn(x.shape, generator=g)
    y = torch.fake_quantize_per_tensor_affine(x, scale, zp, qmin, qmax)
    y.backward(dy)
    return {
        "name": name, "shape": list(x.shape), "x": flat(x), "dy": flat(dy), "scale": float(torch.tensor(scale)),
        "zero_point": zp, "quant_min": qmin, "quant_max": qmax, "y": flat(y), "dx": flat(x.grad),
    }


def fq_channel_case(name, x, scale, zp, axis, qmin, qmax, g):
    x = x.clone().float().requires_grad_(True)
    dy = torch.randn(x.shape, generator=g)
    y = torch.fake_quantize_per_channel_affine(x, scale, zp, axis, qmin, qmax)
    y.backward(dy)
    return {
        "name": name, "shape": list(x.shape), "axis": axis, "x": flat(x), "dy": flat(dy), "scale": flat(scale),
        "zero_point": flat(zp.float()), "zero_point_dtype": "int32" if zp.dtype == torch.int32 else "float32",
        "quant_min": qmin, "quant_max": qmax, "y": flat(y), "dx": flat(x.grad),
    }


def ties(scale, kmin, kmax):
    """x with x*inv exactly k+0.5 (scale a power of two, so inv is exact), and the integers between."""
    ks = torch.arange(kmin, kmax + 1, dtype=torch.float32)
    return torch.cat([(ks + 0.5) * scale, ks * scale])


def gen_fake_quant(g):
    pt = []
    pt.append(fq_tensor_case("ties_int8_zp0", ties(0.25, -6, 5), 0.25, 0, -128, 127, g))
    pt.append(fq_tensor_case("ties_int8_zp3", ties(0.25, -6, 5), 0.25, 3, -128, 127, g))
    pt.append(fq_tensor_case("ties_uint4_zp7", ties(0.5, -9, 9), 0.5, 7, 0, 15, g))
    pt.append(fq_tensor_case("ties_uint4_zp8", ties(0.5, -9, 9), 0.5, 8, 0, 15, g))
    s = 0.1
    qmin, qmax = -8, 7
    edge = torch.tensor([qmin * s, qmax * s, (qmax + 0.5) * s, (qmin - 0.5) * s, (qmax + 0.49) * s, (qmin - 0.51) * s,
                         qmax * s * 1.0001, 100.0, -100.0, 1e6, -1e6, 0.0, -0.0, 0.05, -0.05, 0.15, -0.15])
    pt.append(fq_tensor_case("clip_int4_scale0.1", edge, s, 0, qmin, qmax, g))
    pt.append(fq_tensor_case("clip_uint3_zp2", edge * 3, 0.37, 2, 0, 7, g))
    pt.append(fq_tensor_case("narrow_int8", torch.randn(20, generator=g) * 2, 0.0123, 0, -127, 127, g))
    # zero-width ranges: qparams from torch's observer, so scale is eps
    for name, x in [("zeros", torch.zeros(6)), ("const_pos", torch.full((6,), 0.7)), ("const_neg", torch.full((6,), -2.5))]:
        for spec in [spec_of(8, True, True, False), spec_of(8, False, False, False), spec_of(4, True, False, False)]:
            obs = make_observer(MinMaxObserver, spec)
            obs(x)
            sc, zp = obs.calculate_qparams()
            pt.append(fq_tensor_case(f"{name}_{spec['bits']}b_{'sym' if spec['symmetric'] else 'asym'}", x,
                                     float(sc), int(zp), obs.quant_min, obs.quant_max, g))
    # negative-only range (zero point at qmax), then every grid with observer qparams on 80% of the data
    xneg = -1 - 2 * torch.rand(12, generator=g)
    obs = make_observer(MinMaxObserver, spec_of(8, False, False, False))
    obs(xneg)
    sc, zp = obs.calculate_qparams()
    pt.append(fq_tensor_case("negative_range_uint8", xneg, float(sc), int(zp), 0, 255, g))
    for spec in all_specs():
        x = torch.randn(16, generator=g) * 3 + 0.5
        obs = make_observer(MinMaxObserver, spec)
        obs(x * 0.8)
        sc, zp = obs.calculate_qparams()
        tag = f"{spec['bits']}b_{'s' if spec['signed'] else 'u'}{'_sym' if spec['symmetric'] else ''}{'_narrow' if spec['narrowRange'] else ''}"
        pt.append(fq_tensor_case(f"grid_{tag}", x, float(sc), int(zp), obs.quant_min, obs.quant_max, g))

    pc = []
    shape = (2, 3, 2, 4)
    for axis in (0, 1, 3):
        c = shape[axis]
        x = torch.randn(shape, generator=g) * 2
        scale = (torch.rand(c, generator=g) * 0.3 + 0.05).float()
        zp = torch.randint(-3, 4, (c,), generator=g, dtype=torch.int32)
        pc.append(fq_channel_case(f"int8_axis{axis}", x, scale, zp, axis, -128, 127, g))
        zpu = torch.randint(0, 16, (c,), generator=g, dtype=torch.int32)
        pc.append(fq_channel_case(f"uint4_axis{axis}", x, scale, zpu, axis, 0, 15, g))
    # ties per channel: scales 0.25 and 0.5, zero points even and odd
    xt = torch.stack([ties(0.25, -5, 4), ties(0.5, -5, 4)], dim=1)  # [20, 2], channels last
    pc.append(fq_channel_case("ties_axis1", xt, torch.tensor([0.25, 0.5]), torch.tensor([0, 3], dtype=torch.int32), 1, -4, 3, g))
    # torch's float zero-point path (per_channel_affine_float_qparams): zero point not rounded
    x = torch.randn(3, 5, generator=g)
    pc.append(fq_channel_case("float_zp_axis0", x, torch.tensor([0.1, 0.2, 0.05]), torch.tensor([1.3, 0.0, 7.5]), 0, 0, 15, g))
    return {"per_tensor": pt, "per_channel": pc}


# ---- learnable (LSQ) -------------------------------------------------------------------------------

def learn_case(name, x, scale, zp, qmin, qmax, gf, g, axis=None):
    x = x.clone().float().requires_grad_(True)
    s = scale.clone().float().requires_grad_(True)
    z = zp.clone().float().requires_grad_(True)
    dy = torch.randn(x.shape, generator=g)
    if axis is None:
        y = torch._fake_quantize_learnable_per_tensor_affine(x, s, z, qmin, qmax, gf)
    else:
        y = torch._fake_quantize_learnable_per_channel_affine(x, s, z, axis, qmin, qmax, gf)
    y.backward(dy)
    out = {
        "name": name, "shape": list(x.shape), "x": flat(x), "dy": flat(dy), "scale": flat(s), "zero_point": flat(z),
        "quant_min": qmin, "quant_max": qmax, "grad_factor": gf,
        "y": flat(y), "dx": flat(x.grad), "dscale": flat(s.grad), "dzero_point": flat(z.grad),
    }
    if axis is not None:
        out["axis"] = axis
    return out


def gen_learnable(g):
    pt = []
    xt = torch.cat([ties(0.25, -6, 5), torch.tensor([10.0, -10.0, 0.9, -1.1])])
    for zp in (0.0, 3.0, 2.3, 2.5, -1.7):
        pt.append(learn_case(f"ties_zp{zp}", xt, torch.tensor([0.25]), torch.tensor([zp]), -8, 7, 1.0, g))
    x = torch.randn(4, 6, generator=g) * 2
    pt.append(learn_case("int4_lsq_gf", x, torch.tensor([0.3]), torch.tensor([0.0]), -8, 7, 1.0 / math.sqrt(24 * 7), g))
    pt.append(learn_case("uint8_asym", x, torch.tensor([0.021]), torch.tensor([117.0]), 0, 255, 1.0, g))
    pt.append(learn_case("uint2_clip", x, torch.tensor([0.4]), torch.tensor([1.0]), 0, 3, 0.5, g))
    pc = []
    shape = (3, 4, 5)
    for axis in (0, 1, 2):
        c = shape[axis]
        x = torch.randn(shape, generator=g) * 1.5
        scale = torch.rand(c, generator=g) * 0.4 + 0.05
        zp = torch.randn(c, generator=g) * 2
        pc.append(learn_case(f"int4_axis{axis}", x, scale, zp, -8, 7, 1.0, g, axis=axis))
        n = x.numel() // c
        pc.append(learn_case(f"uint8_axis{axis}_gf", x, scale * 0.1, zp.abs() * 10, 0, 255, 1.0 / math.sqrt(n * 255), g, axis=axis))
    xt2 = torch.stack([ties(0.25, -5, 4), ties(0.5, -5, 4)], dim=0)
    pc.append(learn_case("ties_axis0", xt2, torch.tensor([0.25, 0.5]), torch.tensor([1.0, 2.5]), -4, 3, 1.0, g, axis=0))
    return {"per_tensor": pt, "per_channel": pc}


# ---- observers -------------------------------------------------------------------------------------

def obs_case(name, kind, obs, spec, granularity, batches, momentum=None):
    for b in batches:
        obs(b)
    sc, zp = obs.calculate_qparams()
    out = {
        "name": name, "kind": kind, "spec": dict(spec, granularity=granularity),
        "batches": [{"shape": list(b.shape), "x": flat(b)} for b in batches],
        "min": flat(obs.min_val), "max": flat(obs.max_val), "scale": flat(sc), "zero_point": [int(v) for v in zp.reshape(-1).tolist()],
    }
    if momentum is not None:
        out["momentum"] = momentum
    return out


def gen_observers(g):
    cases = []
    s8 = spec_of(8, False, False, False)
    w4 = spec_of(4, True, True, True)
    per_tensor = {"kind": "per_tensor"}
    batches = [torch.randn(4, 5, generator=g) * k + k for k in (1.0, 2.0, 0.5)]
    cases.append(obs_case("minmax_uint8", "minmax", make_observer(MinMaxObserver, s8), s8, per_tensor, batches))
    cases.append(obs_case("minmax_int4_sym_narrow", "minmax", make_observer(MinMaxObserver, w4), w4, per_tensor, batches))
    for momentum in (0.9, 0.99):
        c = 1.0 - momentum  # momentum is the weight of the old value; torch takes the weight of the new one
        cases.append(obs_case(f"ema_uint8_m{momentum}", "ema_minmax",
                              make_observer(MovingAverageMinMaxObserver, s8, averaging_constant=c), s8, per_tensor, batches, momentum))
    shape = (3, 2, 4)
    for axis in (0, 1, 2):
        bs = [torch.randn(shape, generator=g) * 2 for _ in range(2)]
        gran = {"kind": "per_channel", "axis": axis}
        cases.append(obs_case(f"minmax_perchannel_axis{axis}", "minmax",
                              make_observer(PerChannelMinMaxObserver, w4, ch_axis=axis), w4, gran, bs))
        cases.append(obs_case(f"minmax_perchannel_uint8_axis{axis}", "minmax",
                              make_observer(PerChannelMinMaxObserver, s8, ch_axis=axis), s8, gran, bs))
    bs = [torch.randn(shape, generator=g) * 2 + 1 for _ in range(3)]
    cases.append(obs_case("ema_perchannel_axis1", "ema_minmax",
                          make_observer(MovingAveragePerChannelMinMaxObserver, s8, ch_axis=1, averaging_constant=1.0 - 0.8),
                          s8, {"kind": "per_channel", "axis": 1}, bs, 0.8))
    return {"cases": cases}


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(root, "test", "fixtures", "torch"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    g = torch.Generator().manual_seed(20240601)
    meta = {"torch": torch.__version__, "generator": "scripts/gen_torch_fixtures.py"}
    for name, fn in [("qparams", gen_qparams), ("fake_quant", gen_fake_quant), ("learnable", gen_learnable),
                     ("observers", gen_observers)]:
        data = dict(meta, **fn(g))
        with open(os.path.join(args.out, f"{name}.json"), "w") as f:
            json.dump(data, f, separators=(",", ":"))
    print(f"wrote fixtures to {args.out}")


if __name__ == "__main__":
    main()
