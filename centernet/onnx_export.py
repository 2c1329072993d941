"""CenterNet -> ONNX (FP32, dynamic batch/height/width) -> optional mixed-precision FP16 ONNX.

The graph's contract, also written into its metadata_props so that every consumer can check it:
    input  `canvas`  (B, H, W, 3) uint8, BGR, H and W multiples of 32 (preprocess.CenterCanvas)
    output `heatmap` (B, num_classes, H/4, W/4) float32, sigmoid scores
           `wh`      (B, 2, H/4, W/4) float32, box width/height in stride-4 cells
           `offset`  (B, 2, H/4, W/4) float32, centre offset in stride-4 cells
"""

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np

from .config import CenterNetSpec
from .errors import UserError
from .fileio import atomic_path

INPUT_NAME = 'canvas'
OUTPUT_NAMES = ('heatmap', 'wh', 'offset')
# export.py --end2end: the decode inside the graph, for serving stacks that want boxes.
END2END_INPUT_NAMES = (INPUT_NAME, 'borders')
END2END_OUTPUT_NAMES = ('boxes', 'scores', 'labels')
METADATA_SPEC = 'centernet.spec'
METADATA_END2END = 'centernet.end2end'
# Present only in graphs export.py wrote without its precision gate (--skip-check); the graphs
# derived from such a graph (FP16, INT8) inherit it with the rest of the metadata.
METADATA_GATE = 'centernet.precision_gate'
GATE_SKIPPED = 'skipped'
FORMAT_VERSION = '1'
DEFAULT_OPSET = 17


def metadata_for(spec: CenterNetSpec, classes, precision, end2end=False):
    """metadata_props: the spec (machine-readable) plus plain keys a person can read in Netron."""
    if end2end:
        io = dict(input=f'{INPUT_NAME}: (B, H, W, 3) uint8 BGR canvas, H and W multiples of 32; '
                        'borders: (B, 4) float32 [top, bottom, left, right] of each image',
                  outputs=f'boxes (B, {spec.topk}, 4) xyxy in original-image pixels, scores '
                          f'(B, {spec.topk}), labels (B, {spec.topk}) int64; no NMS, no threshold')
    else:
        io = dict(input=f'{INPUT_NAME}: (B, H, W, 3) uint8 BGR canvas, H and W multiples of 32',
                  outputs='heatmap (sigmoid), wh, offset; decode: centernet.decode.decode_heads')
    return {
        METADATA_SPEC: json.dumps(dataclasses.asdict(spec)),
        'centernet.format_version': FORMAT_VERSION,
        'centernet.precision': precision,
        METADATA_END2END: '1' if end2end else '0',
        'classes': json.dumps(list(classes)),
        'input': io['input'],
        'channel_order': 'BGR in; the graph swaps to RGB before normalising' if spec.bgr_to_rgb
                         else 'as stored',
        'mean': json.dumps(spec.mean),
        'std': json.dumps(spec.std),
        'pad_rule': f'centred on a canvas of (side | {spec.pad_or}) + {spec.pad_add}, filled with '
                    f'{list(spec.canvas_fill)}',
        'output_stride': str(spec.stride),
        'outputs': io['outputs'],
    }


def read_metadata(model_or_path, allow_end2end=False):
    """(spec, classes, metadata dict) from one of our ONNX files; UserError for any other ONNX.

    The backends take the heads graph; an --end2end graph is refused unless `allow_end2end`."""
    import onnx
    if isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path)
        require_file(path)
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise UserError(f'{path} is not an ONNX file ({type(exc).__name__}): make it again '
                            'with export.py') from None
    else:
        model, path = model_or_path, '<model>'
    return check_metadata({p.key: p.value for p in model.metadata_props},
                          [i.name for i in model.graph.input],
                          [o.name for o in model.graph.output], path, allow_end2end)


def require_file(path):
    if not Path(path).is_file():
        raise UserError(f'{path} not found: make it with export.py (see README)')


def check_metadata(meta, inputs, outputs, path, allow_end2end=False):
    """read_metadata's checks on a graph's metadata and input/output names, wherever they were
    read from (ONNX Runtime's session has them too, without importing onnx: 1.4 s a run)."""
    if METADATA_SPEC not in meta:
        raise UserError(f'{path} is not a CenterNet ONNX from this kit (no {METADATA_SPEC} '
                        'metadata): export it with export.py')
    end2end = meta.get(METADATA_END2END) == '1'
    if end2end and not allow_end2end:
        raise UserError(f'{path} is an end-to-end ONNX (boxes out, for serving); inference.py '
                        'takes the heads ONNX: export again without --end2end')
    expected_in, expected_out = ((list(END2END_INPUT_NAMES), END2END_OUTPUT_NAMES) if end2end
                                 else ([INPUT_NAME], OUTPUT_NAMES))
    if list(inputs) != expected_in or tuple(outputs) != expected_out:
        raise UserError(f'{path} has inputs {list(inputs)} and outputs {list(outputs)}; expected '
                        f'{expected_in} and {list(expected_out)}: export it with export.py')
    spec = CenterNetSpec.from_dict(json.loads(meta[METADATA_SPEC]))
    return spec, tuple(json.loads(meta.get('classes', '[]'))), meta


def export_fp32(model, path, opset=DEFAULT_OPSET, static_shape=None, simplify=True,
                classes=(), log=print, end2end=False, accept=None, gated=True):
    """Trace `model` to ONNX at `path` (atomically); dynamic B/H/W unless `static_shape`=(B,H,W).

    `end2end`: the graph also decodes (model.CenterNetWithDecode): inputs canvas + borders,
    outputs boxes, scores, labels. `accept(tmp)` runs on the finished temporary file before it is
    renamed to `path` (export.py's precision gate); an exception there leaves `path` untouched.
    `gated=False` marks the graph as written without the gate (METADATA_GATE)."""
    import onnx
    import torch
    from .model import CenterNetWithDecode
    batch, height, width = static_shape or (1, 512, 672)
    inputs = (torch.zeros((batch, height, width, 3), dtype=torch.uint8),)
    input_names, output_names = [INPUT_NAME], list(OUTPUT_NAMES)
    dynamic_axes = {INPUT_NAME: {0: 'batch', 1: 'height', 2: 'width'}}
    dynamic_axes.update({name: {0: 'batch', 2: 'feat_height', 3: 'feat_width'}
                         for name in OUTPUT_NAMES})
    traced = model
    if end2end:
        traced = CenterNetWithDecode(model).eval()
        inputs += (torch.zeros((batch, 4), dtype=torch.float32),)
        input_names, output_names = list(END2END_INPUT_NAMES), list(END2END_OUTPUT_NAMES)
        dynamic_axes = {INPUT_NAME: {0: 'batch', 1: 'height', 2: 'width'},
                        **{name: {0: 'batch'} for name in input_names[1:] + output_names}}
    with atomic_path(path) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')  # the exporter's deprecation/tracer chatter
            # The TorchScript exporter: this graph needs nothing newer, and it folds BN in eval.
            torch.onnx.export(traced, inputs, str(tmp), dynamo=False, opset_version=opset,
                              input_names=input_names, output_names=output_names,
                              dynamic_axes=None if static_shape else dynamic_axes,
                              do_constant_folding=True)
        proto = onnx.load(str(tmp))
        if simplify:
            proto = simplify_model(proto, log)
        if end2end:  # the tracer leaves the top-k axis symbolic; it is always spec.topk
            for output in proto.graph.output:
                output.type.tensor_type.shape.dim[1].dim_value = model.spec.topk
        meta = metadata_for(model.spec, classes, 'fp32', end2end)
        if not gated:
            meta[METADATA_GATE] = GATE_SKIPPED
        _set_metadata(proto, meta)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
        if accept is not None:
            accept(tmp)
    return path


def gate_skipped_warning(meta, what):
    """The warning line for a model (`what`, e.g. its path) whose metadata says export.py wrote
    it without the precision gate; None for a gated one."""
    if meta.get(METADATA_GATE) != GATE_SKIPPED:
        return None
    from .errors import option_name
    how = option_name('export.py --skip-check', 'INT8_UNCHECKED=1')
    advice = option_name('export it again without --skip-check', 'run without INT8_UNCHECKED=1')
    return (f'warning: {what} was written without the precision gate ({how}): its detections '
            f'are not checked against PyTorch FP32; {advice} to check it')


def simplify_model(proto, log=print):
    import onnxsim
    before = len(proto.graph.node)
    simplified, ok = onnxsim.simplify(proto)
    if not ok:
        raise UserError('onnxsim could not validate the simplified model; rerun with --no-simplify')
    log(f'onnxsim: {before} -> {len(simplified.graph.node)} nodes')
    return simplified


def _set_metadata(proto, entries):
    del proto.metadata_props[:]
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=value)


def fp16_sibling(path):
    """Where the FP16 ONNX made from `path` goes: centernet.onnx -> centernet_fp16.onnx."""
    path = Path(path)
    return path.with_name(path.stem + '_fp16' + path.suffix)


def fp32_sibling(path):
    """The FP32 ONNX whose FP16 form `path` is named as (fp16_sibling's inverse), else None."""
    path = Path(path)
    if not path.stem.endswith('_fp16'):
        return None
    return path.with_name(path.stem[:-len('_fp16')] + path.suffix)


def fp32_islands(proto):
    """Nodes that stay FP32 in the FP16 graph, and why.

    - the input prefix up to the first Conv (uint8 -> float, BGR->RGB, (x - mean) / std): the
      normalised values need FP32's precision, and the prefix costs nothing;
    - each head's last Conv and everything after it (the Sigmoid; in an --end2end graph the whole
      decode, and whatever reads the `borders` input): FP16 would round scores near 1 to steps of
      5e-4, creating ties that the exact-equality peak test and top-k would resolve differently,
      and would round box sizes to 1/16 of a cell. They are 1x1 convs on 64 channels: cheap.
    """
    consumers = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def downstream(names):
        seen, todo = {}, list(names)
        while todo:
            for node in consumers.get(todo.pop(), []):
                if node.name not in seen:
                    seen[node.name] = node
                    todo.extend(node.output)
        return seen

    convs = [n for n in proto.graph.node if n.op_type == 'Conv']
    last_convs = [n for n in convs
                  if not any(m.op_type == 'Conv' for m in downstream(n.output).values())]
    keep = {n.name for n in last_convs}
    keep |= set(downstream([o for n in last_convs for o in n.output]))
    keep |= set(downstream([i.name for i in proto.graph.input if i.name != INPUT_NAME]))
    for node in proto.graph.node:  # topological order: everything before the first Conv
        if node.op_type == 'Conv':
            break
        keep.add(node.name)
    return sorted(keep)


def convert_fp16(fp32_path, fp16_path, log=print, keep_fp32=fp32_islands, accept=None):
    """Mixed-precision FP16 ONNX for strongly typed TensorRT builds (TensorRT 11 has no FP16 flag).

    onnxconverter-common rewrites weights and ops to FP16 and inserts the Casts; I/O stays as in
    the FP32 graph (uint8 in, FP32 out) and the nodes `keep_fp32(proto)` names stay FP32 (the
    precision gate's tests pass another rule to prove that the gate notices). `accept`: as in
    export_fp32.
    """
    import onnx
    from onnxconverter_common import float16
    proto = onnx.load(str(fp32_path))
    spec, classes, meta = read_metadata(proto, allow_end2end=True)
    _constants_to_initializers(proto)
    _initializers_as_raw_data(proto)
    keep = keep_fp32(proto)
    _unshare_initializers(proto, keep)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "float32 number 1e-9 will be truncated to 1e-7": expected
        converted = float16.convert_float_to_float16(proto, keep_io_types=True,
                                                     node_block_list=keep)
    _drop_output_casts(converted)
    save_derived(converted, fp16_path, meta, 'fp16', keep, accept=accept)
    log(f'fp16: kept {len(keep)} nodes in FP32 ({", ".join(keep[:12])}'
        f'{", ..." if len(keep) > 12 else ""})')
    return fp16_path


def save_derived(proto, path, meta, precision, fp32_nodes, accept=None, **extra_meta):
    """Write a graph derived from the FP32 export (FP16, INT8) to `path` atomically: the FP32
    graph's metadata with its precision and FP32 islands (plus `extra_meta`), a full ONNX check,
    then `accept(tmp)` on the finished temporary file before the rename (export.py's gate)."""
    import onnx
    meta = dict(meta, **{'centernet.precision': precision,
                         'centernet.fp32_nodes': json.dumps(list(fp32_nodes))}, **extra_meta)
    _set_metadata(proto, meta)
    onnx.checker.check_model(proto, full_check=True)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
        if accept is not None:
            accept(tmp)
    return path


def _constants_to_initializers(proto):
    """Constant nodes, and Identity nodes of an initializer, -> initializers.

    The converter keeps a blocked node's initializers FP32 but sends a Constant node's value
    through FP16 and back (mean 123.675 would become 123.6875); an unsimplified export reaches
    shared weights through Identity nodes, which the converter cannot keep FP32 either.
    """
    from onnx import numpy_helper
    initializers = {t.name: t for t in proto.graph.initializer}
    for node in [n for n in proto.graph.node if n.op_type in ('Constant', 'Identity')]:
        if node.op_type == 'Constant':
            value = next((a.t for a in node.attribute if a.name == 'value'), None)
        else:
            value = initializers.get(node.input[0])
        if value is None:
            continue
        proto.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(value),
                                                               node.output[0]))
        proto.graph.node.remove(node)
        # A value_info for the name makes the converter treat it as an activation and cast it.
        for info in [v for v in proto.graph.value_info if v.name == node.output[0]]:
            proto.graph.value_info.remove(info)


def _initializers_as_raw_data(proto):
    """Initializers held as float_data (the simplifier's folded neck weights, 1.4 M values) ->
    the same values as raw_data. The converter turns float_data to FP16 one Python int at a time
    (about a second per export), raw_data in one numpy call."""
    from onnx import numpy_helper
    for tensor in proto.graph.initializer:
        if tensor.float_data:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))


def _unshare_initializers(proto, keep):
    """Give FP32-kept nodes their own copy of any initializer that FP16 nodes also read.

    The exporter deduplicates equal tensors (an untrained model's zero biases, say); one tensor
    cannot be both FP32 and FP16, and the converter would fail with "inconsistent type".
    """
    keep = set(keep)
    initializers = {t.name: t for t in proto.graph.initializer}
    readers = {}
    for node in proto.graph.node:
        for name in node.input:
            if name in initializers:
                readers.setdefault(name, set()).add(node.name in keep)
    for node in proto.graph.node:
        if node.name not in keep:
            continue
        for position, name in enumerate(node.input):
            if name in initializers and readers[name] == {True, False}:
                copy = proto.graph.initializer.add()
                copy.CopyFrom(initializers[name])
                copy.name = f'{name}.fp32.{node.name}'
                node.input[position] = copy.name


def _drop_output_casts(proto):
    """Undo the converter's FP16 Cast in front of FP32 outputs produced by blocked nodes.

    With keep_io_types=True, onnxconverter-common 1.16 still appends Cast(to=FLOAT16) after a
    blocked (FP32) node that feeds a graph output, and declares the output FP16. Remove that Cast
    and declare the output FP32 again, so outputs are the FP32 values the blocked node computed.
    """
    from onnx import TensorProto
    for output in proto.graph.output:
        cast = next((n for n in proto.graph.node if output.name in n.output), None)
        to = next((a.i for a in cast.attribute if a.name == 'to'), None) if cast else None
        if cast is None or cast.op_type != 'Cast' or to != TensorProto.FLOAT16:
            continue
        source = cast.input[0]
        for node in proto.graph.node:
            node.output[:] = [output.name if name == source else name for name in node.output]
            node.input[:] = [output.name if name == source else name for name in node.input]
        proto.graph.node.remove(cast)
        output.type.tensor_type.elem_type = TensorProto.FLOAT


def random_canvases(batch, height, width, seed=0):
    """Pictures with structure (not white noise) for parity checks: smooth blobs + noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    canvases = np.empty((batch, height, width, 3), np.uint8)
    for b in range(batch):
        field = sum(rng.uniform(40, 90) * np.sin(xs / rng.uniform(8, 60) + rng.uniform(0, 6))
                    * np.cos(ys / rng.uniform(8, 60)) for _ in range(3))
        for c in range(3):
            canvases[b, ..., c] = np.clip(128 + field * (0.6 + 0.2 * c)
                                          + rng.normal(0, 12, (height, width)), 0, 255)
    return canvases


def compare_outputs(reference, candidate):
    """Max |difference| per output name, and the reference's max |value| (for relative checks)."""
    return {name: (float(np.max(np.abs(np.asarray(candidate[i], np.float64)
                                       - np.asarray(reference[i], np.float64)))),
                   float(np.max(np.abs(reference[i]))))
            for i, name in enumerate(OUTPUT_NAMES)}


def onnxruntime_runner(path):
    """run(canvases, borders=None) -> outputs, on one ONNX Runtime CPU session of `path`."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])

    def run(canvases, borders=None):
        feeds = {INPUT_NAME: canvases}
        if borders is not None:  # an --end2end graph
            feeds[END2END_INPUT_NAMES[1]] = borders
        return session.run(None, feeds)
    return run


def run_onnxruntime(path, canvases, borders=None):
    """Outputs of an exported graph on ONNX Runtime CPU (pass `borders` for an --end2end one)."""
    return onnxruntime_runner(path)(canvases, borders)


def run_torch(model, canvases, borders=None):
    """The same outputs from the PyTorch model (with decode when `borders` is given)."""
    import torch
    from .model import CenterNetWithDecode
    with torch.no_grad():
        if borders is None:
            return [t.numpy() for t in model(torch.from_numpy(canvases))]
        outputs = CenterNetWithDecode(model)(torch.from_numpy(canvases), torch.from_numpy(borders))
        return [t.numpy() for t in outputs]
