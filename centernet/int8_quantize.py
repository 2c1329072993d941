"""FP32 CenterNet ONNX -> INT8 Q/DQ ONNX, calibrated on images preprocessed exactly as inference.

TensorRT 11 has no INT8 builder flag: INT8 exists only as QuantizeLinear/DequantizeLinear pairs in
a strongly typed network, so the ONNX carries it. ONNX Runtime's `quantize_static` writes them,
QDQ format, int8 weights per output channel (symmetric), in one of two flavours:
    tensorrt  int8 activations, symmetric (zero point 0: TensorRT's only INT8 mode), FP32 biases
              (TensorRT quantizes no bias); ReLUs stay, between Q/DQ pairs;
    cpu       uint8 activations, asymmetric, int32 biases: ONNX Runtime's x86 CPU kernels
              (QLinearConv, u8s8) with each ReLU folded into the Q before it. On a 2-core CPU it
              ran 1.7-2.0x the FP32 graph's img/s; the tensorrt flavour, whose placement ONNX
              Runtime does not fuse, 0.66-0.73x (docs/int8.md).
Placement. tensorrt follows TensorRT's Q/DQ placement recommendations (developer guide, "Q/DQ
Layer-Placement Recommendations"): Q/DQ on the inputs of every Conv / ConvTranspose (activation
and per-channel weight) and around MaxPool, never on a conv's output, and on the *residual* input
of each residual Add only, so that TensorRT fuses conv -> Add -> ReLU -> Q into one INT8 kernel
(a Q/DQ pair on the conv-side input would split that fusion). ONNX Runtime quantizes both inputs
of an Add; `_tensorrt_placement` then drops the pair on the conv-side input, as NVIDIA ModelOpt
does (its remove_partial_input_qdq). The cpu flavour keeps ONNX Runtime's own placement (Q/DQ
on op outputs too), which its CPU kernels fuse (QLinearConv, QLinearAdd).
Both keep the FP16 graph's FP32 islands (onnx_export.fp32_islands): the
uint8 -> normalised input prefix, and each head's last 1x1 Conv and the Sigmoid (scores near 1
and box sizes keep FP32 resolution).
Calibration batches are canvases made by the kit's own loader (dataset.make_loader ->
preprocess.CenterCanvas), from a COCO-layout folder or a folder of images.
"""

import contextlib
import io
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from . import onnx_export as ox
from .calibration_set import (CALIB_BATCH, GATE_IMAGES, calibration_limit,  # noqa: F401
                              calibration_records)
from .errors import UserError

CALIBRATION_METHODS = ('minmax', 'entropy', 'percentile')
DEFAULT_METHOD = 'minmax'
DEFAULT_CALIB_IMAGES = 128
PERCENTILE = 99.999
FLAVOURS = ('tensorrt', 'cpu')
# What the tensorrt flavour quantizes: the weighted ops, the residual Adds and MaxPool (whose
# input and output share one scale); ReLUs and the rest stay float, fused by TensorRT.
TENSORRT_OP_TYPES = ['Conv', 'ConvTranspose', 'Add', 'MaxPool']
DEFAULT_FLAVOUR = 'tensorrt'
METADATA_FLAVOUR = 'centernet.int8_flavour'
METADATA_CALIBRATION = 'centernet.int8_calibration'




def left_out(bad, shown=3):
    """'a.jpg (its reason), ...' of dataset.BadImage entries, for a log line."""
    from .report import printable
    more = f' and {len(bad) - shown} more' if len(bad) > shown else ''
    return ', '.join(f'{printable(b.path)} ({b.reason})' for b in bad[:shown]) + more


def gate_inputs(calib_dir, spec, calib_images, count=GATE_IMAGES, batch_size=CALIB_BATCH,
                method=DEFAULT_METHOD):
    """Check inputs for the INT8 precision gate, from the calibration folder: the `count` images
    that follow the calibrated ones, topped up from the first calibrated ones where the folder
    has fewer, as canvas batches made the way inference makes them.

    An INT8 graph is sound for the images its ranges were calibrated on; a generated scene that a
    trained model has never seen drives activations past those ranges (they clip, by design), so
    the gate judges INT8 on the calibration folder's own kind of images.
    Returns ([(canvases uint8 (B,H,W,3), borders float32 (B,4)), ...], a few words on which
    images they are). Unreadable images, and those over calibration_limit(`method`), are left
    out and named there; none left is a UserError."""
    import dataclasses
    from .dataset import make_loader
    from .preprocess import CenterCanvas
    records = calibration_records(calib_dir, calib_images + count)
    held_out = records[calib_images:]
    # re-indexed: the loader finds a record by its index, its position in the list it is given
    chosen = [dataclasses.replace(record, index=position) for position, record in
              enumerate(held_out + records[:calib_images][:count - len(held_out)])]
    inputs, images, bad = [], 0, []
    for loaded in make_loader(chosen, CenterCanvas(spec), batch_size, workers=0,
                              limit=calibration_limit(method)):
        bad += loaded.bad
        for part in loaded.batches:
            inputs.append((part.canvases.numpy(), part.borders.numpy()))
            images += len(part.indices)
    if not inputs:
        raise UserError(f'--calib {calib_dir}: none of the {len(chosen)} images the INT8 '
                        f'precision gate checks could be read: {left_out(bad)}')
    topped_up = len(chosen) - len(held_out)
    which = f'{len(held_out)} after the {min(calib_images, len(records))} calibrated on' + (
        f', and {topped_up} of those: the folder has no more' if topped_up else '')
    skipped = f'; left out {left_out(bad)}' if bad else ''
    return inputs, f'{images} images of {calib_dir} ({which}){skipped}'


class CanvasReader:
    """onnxruntime.quantization.CalibrationDataReader over canvas batches.

    `len` and `set_range` let quantize_static collect statistics a few batches at a time
    (extra option CalibStridedMinMax), so the activations of the whole set are never held at once.
    """

    def __init__(self, records, spec, batch_size=CALIB_BATCH, limit=None):
        from .dataset import ImageReader, canvas_batches, paste_batch
        from .preprocess import CenterCanvas
        self.canvas = CenterCanvas(spec)
        self.paste_batch = paste_batch
        self.batches = canvas_batches(records, self.canvas, batch_size)
        self.reader = ImageReader(records, limit=limit, batches=self.batches)
        self.bad, self.images = [], 0
        self.set_range(0, len(self.batches))

    def __len__(self):
        return len(self.batches)

    def set_range(self, start_index, end_index):
        self._pending = iter(self.batches[start_index:end_index])
        self._ready = iter(())

    def get_next(self):
        for feed in self._ready:
            return feed
        for indices in self._pending:
            loaded = self.paste_batch([self.reader[i] for i in indices], self.canvas)
            self.bad += loaded.bad
            feeds = [{ox.INPUT_NAME: part.canvases.numpy()} for part in loaded.batches]
            self.images += sum(len(part.indices) for part in loaded.batches)
            self._ready = iter(feeds)
            for feed in self._ready:
                return feed
        return None


def _calibrate_method(name):
    from onnxruntime.quantization import CalibrationMethod
    if name not in CALIBRATION_METHODS:
        raise UserError(f'--calib_method {name!r}: choose one of {CALIBRATION_METHODS}')
    return {'minmax': CalibrationMethod.MinMax, 'entropy': CalibrationMethod.Entropy,
            'percentile': CalibrationMethod.Percentile}[name]


def _flavour_options(flavour):
    """(activation type, op types to quantize, extra options) of a flavour (module docstring)."""
    from onnxruntime.quantization import QuantType
    if flavour not in FLAVOURS:
        raise UserError(f'--int8_flavour {flavour!r}: choose one of {FLAVOURS}')
    if flavour == 'tensorrt':
        return QuantType.QInt8, TENSORRT_OP_TYPES, {
            'ActivationSymmetric': True, 'QuantizeBias': False, 'CalibTensorRangeSymmetric': True,
            'OpTypesToExcludeOutputQuantization': ['Conv', 'ConvTranspose', 'Add']}
    return QuantType.QUInt8, None, {'ActivationSymmetric': False, 'QuantizeBias': True}


def _tensorrt_placement(proto):
    """Drop the Q/DQ pair on the conv-side input of each residual Add (module docstring).

    The model's blocks compute `relu(out + identity)` (model.BasicBlock), so input 0 of every
    Add is the block's last conv and input 1 the residual (the block's input, or its downsample
    conv), which stays quantized. A pair is dropped only where it serves that Add alone.
    Returns how many pairs were dropped."""
    producer = {o: n for n in proto.graph.node for o in n.output}
    readers = {}
    for node in proto.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    dropped = []
    for add in [n for n in proto.graph.node if n.op_type == 'Add']:
        dq = producer.get(add.input[0])
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == 'DequantizeLinear' \
            else None
        conv = producer.get(q.input[0]) if q is not None and q.op_type == 'QuantizeLinear' \
            else None
        if conv is None or conv.op_type not in ('Conv', 'ConvTranspose') \
                or readers[dq.output[0]] != 1 or readers[q.output[0]] != 1:
            continue
        add.input[0] = q.input[0]
        dropped += [q, dq]
    for node in dropped:
        proto.graph.node.remove(node)
    used = {name for node in proto.graph.node for name in node.input}
    for initializer in [t for t in proto.graph.initializer if t.name not in used]:
        proto.graph.initializer.remove(initializer)
    return len(dropped) // 2


@contextlib.contextmanager
def _quiet_quantizer():
    """quantize_static logs, on the root logger, advice to run ORT's pre-processing (shape
    inference and onnxsim-style folding): export already simplified the graph, so the advice is
    noise in a user's terminal; so are the histogram calibrators' progress prints on stdout."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def quantize_int8(fp32_path, int8_path, calib_dir, calib_images=DEFAULT_CALIB_IMAGES,
                  method=DEFAULT_METHOD, flavour=DEFAULT_FLAVOUR, accept=None, log=print):
    """Write the Q/DQ INT8 form of `fp32_path` (an export.py FP32 graph) to `int8_path`.

    `accept(tmp)` runs on the finished temporary file before it is renamed to `int8_path` (as in
    onnx_export.export_fp32): export.py gates the graph there, so a refused one never reaches it.

    Returns a dict describing the calibration (method, images, seconds), also stored in the
    graph's metadata."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    proto = onnx.load(str(fp32_path))
    spec, classes, meta = ox.read_metadata(proto)
    if meta.get('centernet.precision', 'fp32') != 'fp32':
        raise UserError(f'{fp32_path} is not the FP32 export: INT8 calibrates the FP32 graph')
    records = calibration_records(calib_dir, calib_images)
    reader = CanvasReader(records, spec, limit=calibration_limit(method))
    keep = ox.fp32_islands(proto)
    activation_type, op_types, options = _flavour_options(flavour)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        quantized_path = Path(folder) / 'int8.onnx'
        with _quiet_quantizer():
            quantize_static(
                proto, str(quantized_path), reader, quant_format=QuantFormat.QDQ,
                per_channel=True, activation_type=activation_type, weight_type=QuantType.QInt8,
                op_types_to_quantize=op_types, nodes_to_exclude=keep,
                calibrate_method=_calibrate_method(method),
                extra_options={'WeightSymmetric': True, 'CalibStridedMinMax': 1,
                               'CalibPercentile': PERCENTILE, **options})
        seconds = time.perf_counter() - start
        if reader.images == 0:
            raise UserError(f'--calib {calib_dir}: none of the {len(records)} images could be '
                            f'read, nothing to calibrate on: {left_out(reader.bad)}')
        if reader.bad:
            log(f'int8: calibration left out {len(reader.bad)} of the {len(records)} images: '
                f'{left_out(reader.bad)}')
        quantized = onnx.load(str(quantized_path))
    moved = _tensorrt_placement(quantized) if flavour == 'tensorrt' else 0
    calibration = dict(method=method, flavour=flavour, images=reader.images,
                       unreadable=len(reader.bad), source=str(calib_dir),
                       seconds=round(seconds, 2),
                       quantizer='onnxruntime.quantization.quantize_static (QDQ, per-channel '
                                 'int8 weights)')
    ox.save_derived(quantized, int8_path, meta, 'int8', keep, accept=accept,
                    **{METADATA_FLAVOUR: flavour, METADATA_CALIBRATION: json.dumps(calibration)})
    log(f'int8 ({flavour}): calibrated on {reader.images} images ({method}) in {seconds:.1f} s; '
        f'kept {len(keep)} nodes in FP32' + (f'; residual Adds: {moved} conv-side Q/DQ pairs '
                                            'dropped (TensorRT fusion)' if moved else ''))
    return calibration


def check_tensorrt_int8(onnx_path, precision, meta):
    """build_engine.py --precision int8 takes only the tensorrt-flavour Q/DQ graph, as it is."""
    onnx_precision = meta.get('centernet.precision', 'fp32')
    if precision != onnx_precision:
        raise UserError(f'{onnx_path} is the {onnx_precision.upper()} ONNX and --precision is '
                        f'{precision}: an INT8 engine is built from the Q/DQ ONNX (export.py '
                        '--precision int8 --calib DIR), and that ONNX only as --precision int8')
    if meta.get(METADATA_FLAVOUR) != 'tensorrt':
        raise UserError(f'{onnx_path} is the {meta.get(METADATA_FLAVOUR)!r}-flavour INT8 ONNX '
                        '(uint8 asymmetric activations, for ONNX Runtime on CPUs); TensorRT takes '
                        'only symmetric int8: export with --int8_flavour tensorrt')


def qdq_summary(proto):
    """What a reader (or a test) checks: Q/DQ counts, the convs whose weights are int8 (through a
    DequantizeLinear), the convs that stayed FP32, and the activation zero points."""
    from onnx import TensorProto, numpy_helper
    initializers = {t.name: t for t in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    int8_convs, float_convs = [], []
    for node in proto.graph.node:
        if node.op_type not in ('Conv', 'ConvTranspose'):
            continue
        weight = producer.get(node.input[1])
        quantized = (weight is not None and weight.op_type == 'DequantizeLinear'
                     and initializers.get(weight.input[0]) is not None
                     and initializers[weight.input[0]].data_type == TensorProto.INT8)
        (int8_convs if quantized else float_convs).append(node.name)
    zero_points = [numpy_helper.to_array(initializers[n.input[2]])
                   for n in proto.graph.node if n.op_type == 'QuantizeLinear']
    ops = [n.op_type for n in proto.graph.node]
    return dict(quantize=ops.count('QuantizeLinear'), dequantize=ops.count('DequantizeLinear'),
                int8_convs=int8_convs, float_convs=float_convs,
                activation_dtypes=sorted({str(z.dtype) for z in zero_points}),
                nonzero_zero_points=sum(int(np.any(z != 0)) for z in zero_points))
