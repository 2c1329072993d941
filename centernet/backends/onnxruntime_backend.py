"""An exported CenterNet ONNX on ONNX Runtime: the CPU path that works everywhere."""

import sys

import numpy as np
import torch

from .. import onnx_export as ox
from ..errors import UserError
from .base import Backend


class OrtBackend(Backend):
    name = 'onnxruntime'
    host_bytes_per_pixel = 108.0  # FP32 activations in ONNX Runtime's arena (tools/benchmark_memory.py)

    def __init__(self, onnx_path, providers=None, threads=0, **_):
        import onnxruntime as ort
        self.path = str(onnx_path)
        ox.require_file(self.path)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads  # 0: one per physical core
        # No busy-waiting between runs: decode and the image loader threads need those cores.
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        available = ort.get_available_providers()
        wanted = providers or ['CPUExecutionProvider']
        missing = [p for p in wanted if p not in available]
        if missing:
            raise UserError(f'ONNX Runtime provider(s) {missing} not available (have {available}): '
                            'install onnxruntime-gpu for CUDAExecutionProvider, or use the default')
        try:
            self.session = ort.InferenceSession(self.path, options, providers=wanted)
        except Exception:
            ox.read_metadata(self.path)  # what is wrong in the kit's terms (not an ONNX, not ours)
            raise
        # The metadata from the session: ox.read_metadata would import onnx (1.4 s) to read it
        self.spec, self.classes, self.metadata = ox.check_metadata(
            self.session.get_modelmeta().custom_metadata_map,
            [i.name for i in self.session.get_inputs()],
            [o.name for o in self.session.get_outputs()], self.path)
        warning = ox.gate_skipped_warning(self.metadata, self.path)
        if warning:  # once per model opened: a run that uses an unchecked graph says so
            print(warning, file=sys.stderr)
        self.providers = self.session.get_providers()
        self.input_name = ox.INPUT_NAME
        shape = self.session.get_inputs()[0].shape
        self.max_batch = shape[0] if isinstance(shape[0], int) else None
        self.static_hw = tuple(shape[1:3]) if all(isinstance(s, int) for s in shape[1:3]) else None

    def largest_canvas(self):
        return self.static_hw

    def upload(self, canvases):
        return canvases  # ONNX Runtime reads host memory

    def run(self, canvases):
        if self.static_hw and tuple(canvases.shape[1:3]) != self.static_hw:
            raise UserError(f'{self.path} was exported with a static {self.static_hw} input, but '
                            f'this batch is {tuple(canvases.shape[1:3])}: export without --static')
        array = np.ascontiguousarray(canvases.numpy())
        outputs = self.session.run(list(ox.OUTPUT_NAMES), {self.input_name: array})
        return tuple(torch.from_numpy(o) for o in outputs)

    def describe(self):
        import onnxruntime as ort
        return dict(backend=self.name, device='cpu', model=self.path,
                    precision=self.metadata.get('centernet.precision', 'fp32'),
                    onnxruntime=ort.__version__, providers=self.providers)
