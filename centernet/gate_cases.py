"""Weight sets and graph defects that prove the precision gate: sound ones must pass, broken ones
must fail (tools/gate_sweep.py runs them all; the tests run a few).

Sound: seeded weights with data-calibrated BatchNorm statistics (synthetic.calibrated_state_dict),
several seeds, BN gammas and head convs scaled within what trained networks show; plus the plain
seeded weights, FP16-safe rescalings and FP16 heads. Broken: FP16 graphs whose FP32 function is
unchanged but whose FP16 arithmetic is wrong (weights/activations past FP16's range or in its
subnormal range, a wrong cast, swapped outputs, zeroed or sign-flipped weights). Nothing here is used on a real run.
"""

import dataclasses

import numpy as np

from .synthetic import calibrated_state_dict, seeded_state_dict

# A BasicBlock whose activations the rescaling cases move (early, high resolution: many cells).
RESCALED_BLOCK = 'backbone.layer1.0'
DAMAGED_CONV = '/backbone/layer3/layer3.0/conv2/Conv'


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    seed: int = 0
    calibrated: bool = True
    gamma_scale: float = 1.0
    head_scale: float = 1.0
    block_scale: float = 1.0     # rescale RESCALED_BLOCK (FP32 function kept): broken if far from 1
    graph_defect: str = ''       # a defect applied to the FP16 graph (GRAPH_DEFECTS)
    fp32_heads: bool = True      # False: the heads' FP32 island converted to FP16 too
    broken: bool = False         # what the gate must say: refuse (True) or pass

    def state_dict(self, model):
        if self.calibrated:
            state = calibrated_state_dict(model, self.seed, self.gamma_scale, self.head_scale)
        else:
            state = seeded_state_dict(model, self.seed)
        if self.block_scale != 1.0:
            state = rescale_block(state, RESCALED_BLOCK, self.block_scale)
        return state


def sound_cases():
    """>= 20 weight sets a sound FP16 conversion must pass."""
    cases = [Case(f'calibrated seed {seed}', seed) for seed in range(1, 9)]
    cases += [Case(f'calibrated seed {seed}, heads x{scale}', seed, head_scale=scale)
              for seed, scale in ((9, 1.5), (10, 1.5), (11, 2.0), (12, 0.7), (13, 0.5))]
    cases += [Case(f'calibrated seed {seed}, gammas x{scale}', seed, gamma_scale=scale)
              for seed, scale in ((14, 1.5), (15, 2.0), (16, 0.7), (17, 0.5))]
    cases += [Case(f'calibrated seed {seed}, gammas x{g}, heads x{h}', seed, gamma_scale=g,
                   head_scale=h) for seed, g, h in ((18, 1.5, 1.5), (19, 0.7, 2.0))]
    cases += [Case(f'seeded seed {seed}', seed, calibrated=False) for seed in (0, 20, 21)]
    cases += [Case(f'calibrated seed {seed}, block x{scale:g} (FP16-safe rescale)', seed,
                   block_scale=scale) for seed, scale in ((22, 10.0), (23, 0.1), (24, 1e3))]
    # The heads' 1x1 convs and sigmoid in FP16 too: rounding scores to 2^-11 relative moves no
    # detection beyond the FP16 tolerances (measured: share 1.0), so the FP32 island is a margin,
    # not a necessity, and the gate must not refuse it.
    cases += [Case('calibrated seed 25, heads FP32 island in FP16 too', 25, fp32_heads=False)]
    return cases


def broken_cases(seed=0):
    """FP16 graphs that compute the FP32 function in exact arithmetic but break FP16."""
    # x1e4 and up: the folded weights and activations leave FP16's range (the converter clamps
    # weights to 1e4); x1e3 stays inside it and is a sound case above.
    cases = [Case(f'block x{scale:g}: past FP16 range', seed, block_scale=scale, broken=True)
             for scale in (1e4, 1e5)]
    cases += [Case(f'block x{scale:g}: activations in FP16 subnormals', seed, block_scale=scale,
                   broken=True) for scale in (1e-5, 1e-6)]
    cases += [Case(f'graph: {name}', seed, graph_defect=name, broken=True)
              for name in GRAPH_DEFECTS]
    return cases


def rescale_block(state, block, scale):
    """Multiply `block`'s bn1 gamma and beta by `scale` and its conv2 weights by 1/scale.

    ReLU(s x) = s ReLU(x) for s > 0, so the block (and the network) computes the same function;
    only the magnitude of the activations between bn1 and conv2 changes, which FP32 absorbs and
    FP16 (max 65504, normal down to 6.1e-5) may not.
    """
    state = dict(state)
    for key in ('bn1.weight', 'bn1.bias'):
        state[f'{block}.{key}'] = state[f'{block}.{key}'] * scale
    state[f'{block}.conv2.weight'] = state[f'{block}.conv2.weight'] / scale
    return state


def _node(proto, name):
    return next(n for n in proto.graph.node if n.name == name)


def _initializer(proto, name):
    return next(t for t in proto.graph.initializer if t.name == name)


def _map_weight(proto, conv_name, change):
    from onnx import numpy_helper
    tensor = _initializer(proto, _node(proto, conv_name).input[1])
    tensor.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(tensor)), tensor.name))


def zero_weights(proto):
    _map_weight(proto, DAMAGED_CONV, np.zeros_like)


def negate_weights(proto):
    """Every sign bit of one conv's FP16 weights flipped (a corrupted tensor)."""
    _map_weight(proto, DAMAGED_CONV, np.negative)


def swap_wh_offset(proto):
    """The wh and offset outputs exchanged (a wrong output binding)."""
    for node in proto.graph.node:
        node.output[:] = [{'wh': 'offset', 'offset': 'wh'}.get(o, o) for o in node.output]


def int_cast(proto):
    """A Cast to INT32 (and back) on the stem's output: truncates every activation."""
    from onnx import TensorProto, helper
    relu = _node(proto, '/backbone/relu/Relu')
    source = relu.output[0]
    to_int, back = f'{source}_as_int', f'{source}_from_int'
    index = list(proto.graph.node).index(relu) + 1
    proto.graph.node.insert(index, helper.make_node('Cast', [source], [to_int], to=TensorProto.INT32,
                                                    name='wrong_cast_int'))
    proto.graph.node.insert(index + 1, helper.make_node('Cast', [to_int], [back],
                                                        to=TensorProto.FLOAT16, name='wrong_cast_back'))
    for node in proto.graph.node[index + 2:]:
        node.input[:] = [back if i == source else i for i in node.input]


def zero_offset(proto):
    """The offset output multiplied by 0 (a dropped head): every box off by up to a cell."""
    from onnx import TensorProto, helper
    producer = next(n for n in proto.graph.node if 'offset' in n.output)
    producer.output[:] = ['offset_before_zero' if o == 'offset' else o for o in producer.output]
    proto.graph.initializer.append(helper.make_tensor('zero_scalar', TensorProto.FLOAT, [], [0.0]))
    proto.graph.node.append(helper.make_node('Mul', ['offset_before_zero', 'zero_scalar'],
                                             ['offset'], name='dropped_offset'))


GRAPH_DEFECTS = {'wrong cast (INT32) after the stem': int_cast,
                 'wh and offset outputs swapped': swap_wh_offset,
                 'offset output zeroed': zero_offset,
                 'one conv\'s FP16 weights zeroed': zero_weights,
                 'one conv\'s FP16 weights sign-flipped': negate_weights}


def input_prefix_only(proto):
    """fp32_islands without the heads: only the input prefix stays FP32."""
    keep = []
    for node in proto.graph.node:
        if node.op_type == 'Conv':
            break
        keep.append(node.name)
    return keep


def make_fp16(case, fp32_path, fp16_path, log=print):
    """The case's FP16 graph (onnx_export.convert_fp16, then its defect) at `fp16_path`."""
    import onnx
    from .onnx_export import convert_fp16, fp32_islands
    convert_fp16(fp32_path, fp16_path, log=log,
                 keep_fp32=fp32_islands if case.fp32_heads else input_prefix_only)
    if case.graph_defect:
        proto = onnx.load(str(fp16_path))
        GRAPH_DEFECTS[case.graph_defect](proto)
        onnx.save(proto, str(fp16_path))
    return fp16_path


# --- INT8: defects of a Q/DQ graph (int8_quantize) the gate must refuse (tools/int8_gate_sweep.py)

def _activation_scales(proto):
    """Names of the activation QuantizeLinear scales (weights are initializers read by a
    DequantizeLinear only)."""
    return {n.input[1] for n in proto.graph.node if n.op_type == 'QuantizeLinear'}


def scale_activations(proto, factor, names=None):
    """Every activation scale (or those in `names`) times `factor`: 1/8 clips every activation
    to an eighth of its calibrated range, 8 rounds them to 8x coarser steps (5-bit)."""
    from onnx import numpy_helper
    for name in _activation_scales(proto) if names is None else names:
        scale = _initializer(proto, name)
        value = numpy_helper.to_array(scale)
        # astype: numpy 1.x (requirements-serve.txt's) promotes a 0-d float32 times a Python
        # float to float64, which QuantizeLinear refuses.
        scale.CopyFrom(numpy_helper.from_array((value * factor).astype(value.dtype), name))


def _map_int8_weight(proto, conv_name, change):
    from onnx import numpy_helper
    producer = {o: n for n in proto.graph.node for o in n.output}
    dequantize = producer[_node(proto, conv_name).input[1]]
    tensor = _initializer(proto, dequantize.input[0])
    tensor.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(tensor)), tensor.name))


def clip_one_layer(proto):
    """The activation feeding DAMAGED_CONV clipped to 1/16 of its calibrated range."""
    producer = {o: n for n in proto.graph.node for o in n.output}
    dequantize = producer[_node(proto, DAMAGED_CONV).input[0]]
    scale_activations(proto, 1 / 16, [producer[dequantize.input[0]].input[1]])


INT8_DEFECTS = {
    'activation scales / 8 (every activation clipped)': lambda p: scale_activations(p, 1 / 8),
    'activation scales x 8 (5-bit activations)': lambda p: scale_activations(p, 8),
    'one layer\'s input clipped to 1/16 of its range': clip_one_layer,
    'one conv\'s int8 weights zeroed':
        lambda p: _map_int8_weight(p, DAMAGED_CONV, np.zeros_like),
    'one conv\'s int8 weights sign-flipped':
        lambda p: _map_int8_weight(p, DAMAGED_CONV, lambda w: -np.maximum(w, -127)),
    'wh and offset outputs swapped': swap_wh_offset,
}


def make_broken_int8(int8_path, target, defect):
    """A copy of a Q/DQ graph with one of INT8_DEFECTS applied, at `target`."""
    import onnx
    proto = onnx.load(str(int8_path))
    INT8_DEFECTS[defect](proto)
    onnx.save(proto, str(target))
    return target
