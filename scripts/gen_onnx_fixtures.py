#!/usr/bin/python3
"""Generate the ONNX import fixtures in test/fixtures/onnx/ (run once; outputs are committed).

  /usr/bin/python3 scripts/gen_onnx_fixtures.py

Each model gets a JSON beside it with a reference input and the expected output computed with
torch (never with onnxruntime), and test/fixtures/onnx/index.json lists them all.
Needs torch 1.13 (torch.onnx.export, opsets 9..17) and onnx 1.12 (onnx.helper, onnx.checker).
"""
import io
import json
import os

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'onnx')
INT64_MAX = 2**63 - 1


def tensor_json(a):
    a = np.asarray(a)
    return {'dtype': str(a.dtype), 'dims': list(a.shape), 'data': [float(v) if a.dtype.kind == 'f' else int(v) for v in a.flatten()]}


def save(name, model_bytes, inputs, outputs, entry):
    m = onnx.load_from_string(model_bytes)
    onnx.checker.check_model(m)
    with open(os.path.join(OUT, name + '.onnx'), 'wb') as f:
        f.write(model_bytes)
    ref = {'file': name + '.onnx', 'inputs': {k: tensor_json(v) for k, v in inputs.items()},
           'outputs': {k: tensor_json(v) for k, v in outputs.items()}}
    with open(os.path.join(OUT, name + '.json'), 'w') as f:
        json.dump(ref, f)
    opset = [o.version for o in m.opset_import if o.domain in ('', 'ai.onnx')][0]
    ops = sorted({n.op_type for n in m.graph.node})
    entry.update({
        'file': name + '.onnx', 'reference': name + '.json', 'opset': opset, 'ir_version': m.ir_version,
        'inputs': [{'name': k, 'dtype': str(np.asarray(v).dtype), 'shape': list(np.asarray(v).shape)} for k, v in inputs.items()],
        'outputs': [{'name': k, 'dtype': str(np.asarray(v).dtype), 'shape': list(np.asarray(v).shape)} for k, v in outputs.items()],
        'ops': ops,
    })
    return entry


# ---- torch-exported models -----------------------------------------------------

class CNN(nn.Module):
    """conv+bn+relu+pool+gemm (EVAL export fuses the BN into the conv); the view() keeps a Shape/Gather/Unsqueeze/Concat chain when folding is off."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.bn(self.conv(x))))
        x = x.view(x.size(0), -1)
        return self.fc(x)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.bn = nn.BatchNorm1d(32)  # stays a BatchNormalization node: eval export fuses only Conv+BN
        self.drop = nn.Dropout(0.25)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = self.drop(F.relu(self.bn(self.fc1(x))))
        return torch.softmax(self.fc2(x), dim=-1)


def randomize_bn(bn, g):
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.1)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(bn.num_features, generator=g) * 0.1)


def export_torch(model, x, opset, fold):
    f = io.BytesIO()
    torch.onnx.export(model, (x,), f, opset_version=opset, do_constant_folding=fold,
                      training=torch.onnx.TrainingMode.EVAL, input_names=['input'], output_names=['output'],
                      dynamic_axes={'input': {0: 'N'}, 'output': {0: 'N'}})
    return f.getvalue()


def torch_models():
    entries = []
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    cnn = CNN()
    randomize_bn(cnn.bn, g)
    cnn.eval()
    x = torch.randn(2, 3, 8, 8, generator=g)
    with torch.no_grad():
        y = cnn(x)
    for opset, fold in [(9, True), (11, True), (13, True), (17, True), (9, False), (13, False)]:
        name = f'cnn_op{opset}' + ('' if fold else '_nofold')
        entries.append(save(name, export_torch(cnn, x, opset, fold), {'input': x.numpy()}, {'output': y.numpy()},
                            {'producer': 'pytorch ' + torch.__version__, 'style': 'pytorch', 'constant_folding': fold}))
    mlp = MLP()
    randomize_bn(mlp.bn, g)
    mlp.eval()
    x = torch.randn(3, 4, 4, generator=g)
    with torch.no_grad():
        y = mlp(x)
    for opset in [9, 11, 13, 17]:
        entries.append(save(f'mlp_op{opset}', export_torch(mlp, x, opset, True), {'input': x.numpy()}, {'output': y.numpy()},
                            {'producer': 'pytorch ' + torch.__version__, 'style': 'pytorch', 'constant_folding': True}))
    return entries


# ---- hand-built models in the forms tf2onnx and Paddle2ONNX emit ---------------

def const(name, arr):
    """A Constant node holding a tensor (the only Constant form before opset 12)."""
    return helper.make_node('Constant', [], [name], name=name + '_const', value=numpy_helper.from_array(np.asarray(arr), name))


def tf2onnx_op9(rng):
    """Opset 9: weights in Constant nodes, Pad/Slice/Unsqueeze/Squeeze/ReduceMean attribute forms,
    Upsample-9, Dropout, and a pre-13 Softmax on a 3-D tensor with axis=1 (flattening semantics)."""
    W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3
    B = rng.standard_normal(4).astype(np.float32) * 0.1
    scale = (rng.random(4) + 0.5).astype(np.float32)
    bias = (rng.standard_normal(4) * 0.1).astype(np.float32)
    mean = (rng.standard_normal(4) * 0.1).astype(np.float32)
    var = (rng.random(4) + 0.5).astype(np.float32)
    nodes = [
        const('W', W), const('B', B), const('bn_scale', scale), const('bn_bias', bias), const('bn_mean', mean), const('bn_var', var),
        helper.make_node('Conv', ['x', 'W', 'B'], ['c'], name='conv', pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node('BatchNormalization', ['c', 'bn_scale', 'bn_bias', 'bn_mean', 'bn_var'], ['bn'], name='bn', epsilon=1e-3),
        helper.make_node('Clip', ['bn'], ['relu6'], name='relu6', min=0.0, max=6.0),
        helper.make_node('Dropout', ['relu6'], ['drop'], name='dropout', ratio=0.5),
        helper.make_node('Pad', ['drop'], ['pad'], name='pad', pads=[0, 0, 1, 1, 0, 0, 1, 1], mode='constant', value=0.5),
        helper.make_node('MaxPool', ['pad'], ['pool'], name='pool', kernel_shape=[2, 2], strides=[2, 2]),
        const('up_scales', np.array([1, 1, 2, 2], np.float32)),
        helper.make_node('Upsample', ['pool', 'up_scales'], ['up'], name='upsample', mode='nearest'),
        const('shape', np.array([1, 4, -1], np.int64)),
        helper.make_node('Reshape', ['up', 'shape'], ['flat'], name='reshape'),
        helper.make_node('Softmax', ['flat'], ['sm'], name='softmax', axis=1),
        helper.make_node('Unsqueeze', ['sm'], ['us'], name='unsqueeze', axes=[1]),
        helper.make_node('ReduceMean', ['us'], ['rm'], name='reduce_mean', axes=[3], keepdims=0),
        helper.make_node('Squeeze', ['rm'], ['sq'], name='squeeze', axes=[1]),
        helper.make_node('Slice', ['sq'], ['sl'], name='slice', starts=[1], ends=[INT64_MAX], axes=[1]),
        const('k', np.array(256.0, np.float32)),
        helper.make_node('Mul', ['sl', 'k'], ['scaled'], name='mul'),
        helper.make_node('Identity', ['scaled'], ['y'], name='identity'),
    ]
    graph = helper.make_graph(nodes, 'tf2onnx_op9', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, producer_name='tf2onnx-style', opset_imports=[helper.make_opsetid('', 9)])
    model.ir_version = 4
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    t = lambda a: torch.from_numpy(a)
    c = F.conv2d(t(x), t(W), t(B), padding=1)
    bn = F.batch_norm(c, t(mean), t(var), t(scale), t(bias), training=False, eps=1e-3)
    r = bn.clamp(0, 6)
    p = F.pad(r, (1, 1, 1, 1), value=0.5)
    m = F.max_pool2d(p, 2, 2)
    u = F.interpolate(m, scale_factor=2, mode='nearest')
    fl = u.reshape(1, 4, -1)
    sm = fl.reshape(1, -1).softmax(-1).reshape(fl.shape)  # opset < 13: softmax over everything from axis 1
    y = sm.unsqueeze(1).mean(dim=3).squeeze(1)[:, 1:] * 256.0
    return model.SerializeToString(), {'x': x}, {'y': y.numpy()}


def legacy_op8(rng):
    """Opset 8: BatchNormalization with spatial, Clip min/max attributes, Upsample-7 scales attribute,
    Unsqueeze/Squeeze axes attributes, Reshape and a pre-13 Softmax with its default axis (1) on 2-D."""
    W = rng.standard_normal((4, 3, 1, 1)).astype(np.float32) * 0.5
    scale = (rng.random(4) + 0.5).astype(np.float32)
    bias = (rng.standard_normal(4) * 0.1).astype(np.float32)
    mean = (rng.standard_normal(4) * 0.1).astype(np.float32)
    var = (rng.random(4) + 0.5).astype(np.float32)
    M = rng.standard_normal((256, 5)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in [(W, 'W'), (scale, 'scale'), (bias, 'bias'), (mean, 'mean'), (var, 'var'),
                                                        (np.array([1, -1], np.int64), 'shape'), (M, 'M')]]
    nodes = [
        helper.make_node('Conv', ['x', 'W'], ['c'], name='conv', kernel_shape=[1, 1]),
        helper.make_node('BatchNormalization', ['c', 'scale', 'bias', 'mean', 'var'], ['bn'], name='bn', spatial=1, epsilon=1e-5, momentum=0.9),
        helper.make_node('Clip', ['bn'], ['clip'], name='clip', min=-1.0, max=1.0),
        helper.make_node('Upsample', ['clip'], ['up'], name='upsample', scales=[1.0, 1.0, 2.0, 2.0], mode='nearest'),
        helper.make_node('Unsqueeze', ['up'], ['us'], name='unsqueeze', axes=[0]),
        helper.make_node('Squeeze', ['us'], ['sq'], name='squeeze', axes=[0]),
        helper.make_node('Reshape', ['sq', 'shape'], ['flat'], name='reshape'),
        helper.make_node('Softmax', ['flat'], ['sm'], name='softmax'),
        helper.make_node('MatMul', ['sm', 'M'], ['y'], name='matmul'),
    ]
    graph = helper.make_graph(nodes, 'legacy_op8', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 5])], initializer=inits)
    model = helper.make_model(graph, producer_name='legacy-style', opset_imports=[helper.make_opsetid('', 8)])
    model.ir_version = 3
    # IR 3 requires initializers to be listed as graph inputs too
    for i in inits:
        model.graph.input.append(helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)))
    x = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    t = lambda a: torch.from_numpy(a)
    c = F.conv2d(t(x), t(W))
    bn = F.batch_norm(c, t(mean), t(var), t(scale), t(bias), training=False, eps=1e-5)
    u = F.interpolate(bn.clamp(-1, 1), scale_factor=2, mode='nearest')
    y = u.reshape(1, -1).softmax(1) @ t(M)
    return model.SerializeToString(), {'x': x}, {'y': y.numpy()}


def paddle_op13(rng):
    """Opset 13, Paddle2ONNX style: Constant value_float/value_floats/value_int/value_ints, Clip and Squeeze and
    ReduceSum and Split with their opset-13 inputs, ReduceMean with axes attribute, Dropout-12 with ratio input,
    and an opset-13 Softmax (axis=1 on 3-D means that axis only)."""
    w = rng.standard_normal(8).astype(np.float32)
    c = lambda name, **kw: helper.make_node('Constant', [], [name], name=name + '_const', **kw)
    nodes = [
        c('lo', value_float=-0.5), c('hi', value_float=0.5),
        helper.make_node('Clip', ['x', 'lo', 'hi'], ['clip'], name='clip'),
        c('shape', value_ints=[2, 3, 8]),
        helper.make_node('Reshape', ['clip', 'shape'], ['r'], name='reshape'),
        helper.make_node('Softmax', ['r'], ['sm'], name='softmax', axis=1),
        c('w', value_floats=[float(v) for v in w]),
        helper.make_node('Mul', ['sm', 'w'], ['m'], name='mul'),
        c('axes', value_ints=[1]),
        helper.make_node('ReduceSum', ['m', 'axes'], ['rs'], name='reduce_sum', keepdims=1),
        helper.make_node('Squeeze', ['rs', 'axes'], ['sq'], name='squeeze'),
        c('ratio', value_float=0.3),
        helper.make_node('Dropout', ['sq', 'ratio'], ['drop'], name='dropout'),
        c('split', value_ints=[3, 5]),
        helper.make_node('Split', ['drop', 'split'], ['a', 'b'], name='split', axis=1),
        helper.make_node('ReduceMean', ['a'], ['ma'], name='reduce_mean', axes=[1], keepdims=1),
        c('two', value_int=2),
        helper.make_node('Cast', ['two'], ['twof'], name='cast', to=TensorProto.FLOAT),
        helper.make_node('Add', ['b', 'ma'], ['s'], name='add'),
        helper.make_node('Mul', ['s', 'twof'], ['y'], name='scale'),
    ]
    graph = helper.make_graph(nodes, 'paddle_op13', [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', 6, 4])],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, ['N', 5])])
    model = helper.make_model(graph, producer_name='paddle-style', opset_imports=[helper.make_opsetid('', 13)])
    model.ir_version = 7
    x = rng.standard_normal((2, 6, 4)).astype(np.float32)
    r = torch.from_numpy(x).clamp(-0.5, 0.5).reshape(2, 3, 8)
    sq = (r.softmax(1) * torch.from_numpy(w)).sum(1)
    a, b = sq[:, :3], sq[:, 3:]
    y = (b + a.mean(1, keepdim=True)) * 2.0
    return model.SerializeToString(), {'x': x}, {'y': y.numpy()}


def typed_field_tensors():
    """TensorProtos written by onnx.helper with the typed repeated fields (raw=False), plus one raw_data tensor,
    to check our reader against the reference implementation's encoding."""
    cases = [
        ('float32', TensorProto.FLOAT, [2, 3], [0.5, -1.25, 3.0e-8, 1e30, -0.0, 7.0]),
        ('float64', TensorProto.DOUBLE, [3], [1.0 / 3.0, -2.5e-300, 1e300]),
        ('float16', TensorProto.FLOAT16, [3], [1.0, -2.0, 0.5]),
        ('int8', TensorProto.INT8, [4], [-128, -1, 0, 127]),
        ('uint8', TensorProto.UINT8, [3], [0, 128, 255]),
        ('int16', TensorProto.INT16, [2], [-32768, 32767]),
        ('uint16', TensorProto.UINT16, [2], [0, 65535]),
        ('int32', TensorProto.INT32, [3], [-2**31, -1, 2**31 - 1]),
        ('uint32', TensorProto.UINT32, [2], [0, 2**32 - 1]),
        ('int64', TensorProto.INT64, [4], [-2**63, -1, 2**53 + 1, 2**63 - 1]),
        ('uint64', TensorProto.UINT64, [2], [0, 2**64 - 1]),
        ('bool', TensorProto.BOOL, [3], [True, False, True]),
        ('string', TensorProto.STRING, [2], [b'abc', 'h\u00e9llo'.encode('utf-8')]),
    ]
    entries = []
    for name, code, dims, vals in cases:
        t = helper.make_tensor(name, code, dims, vals, raw=False)
        with open(os.path.join(OUT, 'tensors', name + '.pb'), 'wb') as f:
            f.write(t.SerializeToString())
        arr = numpy_helper.to_array(t)
        if name == 'float16':
            data = [int(v) for v in arr.view(np.uint16).flatten()]  # IEEE half bits, as the IR holds float16
        elif name == 'string':
            data = [v.decode('utf-8') if isinstance(v, bytes) else str(v) for v in arr.flatten()]
        elif name.startswith(('int64', 'uint64')):
            data = [str(int(v)) for v in arr.flatten()]  # beyond JSON's safe integers
        elif name == 'bool':
            data = [int(v) for v in arr.flatten()]
        else:
            data = [float(v) if arr.dtype.kind == 'f' else int(v) for v in arr.flatten()]
        entries.append({'file': name + '.pb', 'name': name, 'dtype': name, 'dims': dims, 'data': data})
    raw = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5, 'raw_float32')
    with open(os.path.join(OUT, 'tensors', 'raw_float32.pb'), 'wb') as f:
        f.write(raw.SerializeToString())
    entries.append({'file': 'raw_float32.pb', 'name': 'raw_float32', 'dtype': 'float32', 'dims': [2, 3],
                    'data': [float(v) for v in (np.arange(6, dtype=np.float32) - 2.5)]})
    with open(os.path.join(OUT, 'tensors', 'index.json'), 'w') as f:
        json.dump({'about': 'TensorProtos from onnx.helper.make_tensor(raw=False); int64/uint64 data as decimal strings, '
                            'float16 as IEEE half bits', 'tensors': entries}, f, indent=1)


def main():
    os.makedirs(os.path.join(OUT, 'tensors'), exist_ok=True)
    typed_field_tensors()
    entries = torch_models()
    rng = np.random.default_rng(0)
    for name, build, style in [('tf2onnx_op9', tf2onnx_op9, 'tf2onnx'), ('legacy_op8', legacy_op8, 'legacy'), ('paddle_op13', paddle_op13, 'paddle')]:
        b, i, o = build(rng)
        entries.append(save(name, b, i, o, {'producer': 'onnx.helper ' + onnx.__version__, 'style': style, 'constant_folding': None}))
    index = {
        'version': 1,
        'about': 'ONNX import fixtures from scripts/gen_onnx_fixtures.py; each reference JSON holds inputs and '
                 'torch-computed outputs as {dtype, dims, data} keyed by graph input/output name.',
        'models': entries,
    }
    with open(os.path.join(OUT, 'index.json'), 'w') as f:
        json.dump(index, f, indent=1)
    total = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(OUT) for n in ns)
    print(f'{len(entries)} models, {total} bytes in {os.path.normpath(OUT)}')


if __name__ == '__main__':
    main()
