"""A TensorRT engine (.engine / .plan, from build_engine.py) behind the Backend interface.

Streams and synchronisation
    The engine runs on one non-default CUDA stream, a torch.cuda.Stream, which the backend makes
    the thread's current torch stream when it opens (TensorRT advises against the legacy default
    stream: it adds synchronisation). Uploads go on a second stream (base.cuda_upload), so the next
    batch's copy overlaps this batch's compute; the engine stream waits for the copy on the GPU.
    The engine's execute_async_v3 and the torch decode that runs afterwards on the returned tensors
    are ordered by the engine stream itself: no event and no host wait between them. The host waits only
    when results are copied to the CPU (`.cpu()` synchronises) or on `synchronize()`.
    If the caller has since made another stream current, `run` makes the engine's stream wait for
    that stream before TensorRT starts, and that stream wait for TensorRT before `run` returns, so
    the order still holds.

Buffers
    The outputs are written into device buffers the backend owns: allocated at the first batch,
    re-allocated only when a larger shape comes, and returned as views at the current shape. The
    views are overwritten by the next `run`: decode them (or clone them) before that.

Everything that needs CUDA is in `CudaStreamDevice`; the contract tests inject a CPU stand-in with
the same methods (tests/test_tensorrt_contract.py), and a fake `tensorrt` module.
"""

import hashlib
import math
import sys
from pathlib import Path

import torch

from .. import engine_build as eb
from .. import engine_parts
from .. import onnx_export as ox
from ..config import CenterNetSpec
from ..errors import UserError
from .base import Backend, copy_stream_for, cuda_upload

# name -> (I/O mode, TensorRT data type) that the ONNX contract implies.
EXPECTED_TENSORS = {ox.INPUT_NAME: ('INPUT', 'UINT8'),
                    **{name: ('OUTPUT', 'FLOAT') for name in ox.OUTPUT_NAMES}}


class CudaStreamDevice:
    """The backend's CUDA side: an engine stream, a copy stream, and memory on the current GPU."""

    def __init__(self):
        # The GPU current now: TensorRT deserializes the engine onto it, and runs it only there.
        self.device = torch.device('cuda', torch.cuda.current_device())
        self.stream = torch.cuda.Stream(self.device)
        # Copies to the GPU go on the GPU's copy stream, so the next batch's upload overlaps
        # the engine's work on the current one (pipeline.detect_records launches it first).
        self.copy_stream = copy_stream_for(self.device)
        # The current stream from now on, so the torch decode after `run` queues behind TensorRT.
        torch.cuda.set_stream(self.stream)

    def upload(self, cpu_tensor):
        """CPU -> GPU without blocking the host, overlapping the engine's current work."""
        return cuda_upload(cpu_tensor, self.stream, self.copy_stream)

    def empty(self, numel, dtype):
        with torch.cuda.stream(self.stream):
            return torch.empty(numel, dtype=dtype, device=self.device)

    def hold(self, tensor):
        """Keep `tensor`'s memory from reuse until the backend's stream is done with it (it may
        have been allocated on another stream)."""
        tensor.record_stream(self.stream)

    def enqueue(self, launch):
        """launch(stream handle), after the current stream's work so far and before its next."""
        caller = torch.cuda.current_stream()
        foreign = caller != self.stream
        if foreign:
            self.stream.wait_stream(caller)
        ok = launch(self.stream.cuda_stream)
        if foreign:
            caller.wait_stream(self.stream)
        return ok


class CanvasLimits:
    """The `canvas` shapes the engine's optimisation profile accepts (read from the engine)."""

    def __init__(self, min_shape, max_shape):
        self.min_batch, self.min_height, self.min_width = min_shape[:3]
        self.max_batch, self.max_height, self.max_width = max_shape[:3]

    def problem(self, batch, height, width):
        """None when (batch, height, width) fits, else what does not fit."""
        if not self.min_batch <= batch <= self.max_batch:
            return f'batch {batch} is outside {self.min_batch}..{self.max_batch}'
        if not (self.min_height <= height <= self.max_height
                and self.min_width <= width <= self.max_width):
            return (f'canvas {height}x{width} is outside {self.min_height}..{self.max_height} x '
                    f'{self.min_width}..{self.max_width}')
        if height % eb.SIDE_MULTIPLE or width % eb.SIDE_MULTIPLE:
            return f'canvas {height}x{width} is not a multiple of {eb.SIDE_MULTIPLE}'
        return None

    def describe(self):
        return (f'batch {self.min_batch}..{self.max_batch}, H {self.min_height}..'
                f'{self.max_height}, W {self.min_width}..{self.max_width}')


class OutputBuffer:
    """One output's device memory, grown on demand and viewed at each batch's shape."""

    def __init__(self, allocate, dtype):
        self.allocate = allocate
        self.dtype = dtype
        self.flat = None

    def view(self, shape):
        numel = math.prod(shape)
        if self.flat is None or self.flat.numel() < numel:
            self.flat = None  # free the old buffer before allocating the larger one
            self.flat = self.allocate(numel, self.dtype)
        return self.flat[:numel].view(shape)


class TrtBackend(Backend):
    """A TensorRT engine and its sidecar JSON; see the module docstring for streams and buffers.

    `gpu` replaces the CUDA side (CudaStreamDevice) and is for the contract tests only;
    `warn_unchecked=False` is for the self-check itself (engine_check), which runs an engine
    before it has a passed check. Other options are for other backends and are ignored.
    """

    name = 'tensorrt'

    def __init__(self, engine_path, gpu=None, warn_unchecked=True, **options):
        self.engine_path = Path(engine_path)
        self.trt = eb.import_tensorrt()
        self.gpu_info = eb.current_gpu()
        if not self.engine_path.is_file():
            raise UserError(f'{self.engine_path} not found: build it with python3 build_engine.py '
                            '--model MODEL.onnx --engine ENGINE (see README)')
        self.record = eb.read_sidecar(self.engine_path)
        self._check_built_here()
        if warn_unchecked:
            self._warn_unless_checked()
            warning = ox.gate_skipped_warning(self.record.get('onnx_metadata') or {},
                                              f'the ONNX {self.engine_path} was built from')
            if warning:
                print(warning, file=sys.stderr)
        blob = self.engine_path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != self.record.get('engine_sha256'):
            raise UserError(f'{self.engine_path} does not match its sidecar (the engine file was '
                            f'replaced after the build): {self._rebuild_hint()}')

        self.logger = engine_parts.make_logger(self.trt)  # prints warnings, keeps the errors
        self.runtime = self.trt.Runtime(self.logger)  # kept: it must outlive the engine
        self.engine = self.runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise UserError(f'TensorRT {self.trt.__version__} could not deserialize '
                            f'{self.engine_path} ({self._logged()}): {self._rebuild_hint()}')
        self.dtypes = self._check_tensors()
        min_shape, _, max_shape = (tuple(s) for s in
                                   self.engine.get_tensor_profile_shape(ox.INPUT_NAME, 0))
        self.limits = CanvasLimits(min_shape, max_shape)
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise UserError(f'TensorRT could not create an execution context for '
                            f'{self.engine_path} (out of GPU memory?): free GPU memory or rebuild '
                            'with a smaller --max_batch/--max_side')

        self.spec = CenterNetSpec.from_dict(self.record['spec'])
        self.classes = tuple(self.record.get('classes') or ())
        self.max_batch = self.limits.max_batch
        self.gpu = gpu if gpu is not None else CudaStreamDevice()
        self.device = self.gpu.device
        self.outputs = {name: OutputBuffer(self.gpu.empty, self.dtypes[name])
                        for name in ox.OUTPUT_NAMES}

    # --- opening ----------------------------------------------------------------------------

    def _rebuild_hint(self):
        onnx = self.record.get('onnx', 'MODEL.onnx')
        precision = self.record.get('precision', 'fp16')
        return (f'rebuild it with python3 build_engine.py --model {onnx} --engine '
                f'{self.engine_path} --precision {precision} --force')

    def _logged(self):
        errors = self.logger.take_errors()
        return f'TensorRT said: {errors[-1]}' if errors else 'TensorRT logged no error'

    def _warn_unless_checked(self):
        """One line when build_engine's self-check did not pass (skipped, or no FP32 ONNX)."""
        check = self.record.get('self_check') or {}
        if check.get('status') == 'passed':
            return
        said = check.get('status') or 'none recorded'
        if check.get('reason'):
            said += f': {check["reason"]}'
        print(f'warning: {self.engine_path} has no passed self-check (sidecar: {said}): its '
              'detections are not verified against ONNX Runtime; rebuild it without '
              '--skip-check (build_engine.py --force) to check it', file=sys.stderr)

    def _check_built_here(self):
        """Engines load only on the TensorRT version and GPU architecture that built them."""
        built, installed = self.record.get('tensorrt'), str(self.trt.__version__)
        if built != installed:
            raise UserError(f'{self.engine_path} was built with TensorRT {built}, but TensorRT '
                            f'{installed} is installed: {self._rebuild_hint()}')
        built_cc, here = self.record.get('compute_capability'), self.gpu_info
        if built_cc != here.compute_capability:
            raise UserError(f'{self.engine_path} was built for compute capability {built_cc} '
                            f'({self.record.get("gpu")}), but this GPU ({here.name}) is '
                            f'{here.compute_capability}: {self._rebuild_hint()}')
        if self.record.get('gpu') != here.name:
            # Same architecture, another model: TensorRT loads it, tuned for the other card.
            print(f'warning: {self.engine_path} was built on {self.record.get("gpu")}, this GPU '
                  f'is {here.name}: it runs, but a rebuild tunes it for this card',
                  file=sys.stderr)

    def _check_tensors(self):
        """The engine's I/O must be the ONNX contract's; returns name -> torch dtype."""
        engine = self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if sorted(names) != sorted(EXPECTED_TENSORS):
            raise UserError(f'{self.engine_path} has I/O tensors {names}; expected '
                            f'{list(EXPECTED_TENSORS)}: build it from this kit\'s ONNX with '
                            'build_engine.py')
        dtypes = {}
        for name, (mode, dtype) in EXPECTED_TENSORS.items():
            got_mode = engine.get_tensor_mode(name).name
            got_dtype = engine.get_tensor_dtype(name)
            if got_mode != mode or got_dtype.name != dtype:
                raise UserError(f'{self.engine_path}: tensor {name!r} is {got_mode} '
                                f'{got_dtype.name}, expected {mode} {dtype}: build it from this '
                                'kit\'s ONNX with build_engine.py')
            dtypes[name] = eb.torch_dtype_for(got_dtype)
        return dtypes

    # --- running ----------------------------------------------------------------------------

    def upload(self, canvases):
        if not isinstance(canvases, torch.Tensor):
            canvases = torch.as_tensor(canvases)
        return self.gpu.upload(canvases.contiguous())

    def run(self, canvases):
        shape = self._check_canvases(canvases)
        batch, height, width = shape[:3]
        if not self.context.set_input_shape(ox.INPUT_NAME, shape):
            raise UserError(f'TensorRT refused input shape {shape} for {self.engine_path} '
                            f'(profile {self.limits.describe()}): {self._rebuild_hint()}')
        self.gpu.hold(canvases)
        self._set_address(ox.INPUT_NAME, canvases)
        results = []
        for name in ox.OUTPUT_NAMES:
            out_shape = tuple(self.context.get_tensor_shape(name))
            expected = (batch, self.spec.num_classes if name == 'heatmap' else 2,
                        height // self.spec.stride, width // self.spec.stride)
            if out_shape != expected:
                raise UserError(f'{self.engine_path}: output {name!r} has shape {out_shape} for '
                                f'canvas {shape}, expected {expected}: {self._rebuild_hint()}')
            tensor = self.outputs[name].view(out_shape)
            self._set_address(name, tensor)
            results.append(tensor)
        if not self.gpu.enqueue(self.context.execute_async_v3):
            raise UserError(f'TensorRT could not run {self.engine_path} ({self._logged()}): '
                            f'{self._rebuild_hint()}')
        return tuple(results)

    def _set_address(self, name, tensor):
        # False: TensorRT did not take the pointer (a wrong name, or memory it cannot use, such
        # as a misaligned address); running anyway would read or write the previous buffers.
        if not self.context.set_tensor_address(name, tensor.data_ptr()):
            raise UserError(f'TensorRT refused the memory of tensor {name!r} '
                            f'({tuple(tensor.shape)} {tensor.dtype} at {tensor.data_ptr():#x}) '
                            f'for {self.engine_path} ({self._logged()}): pass canvases '
                            'through backend.upload() (or backend.infer())')

    def _check_canvases(self, canvases):
        if canvases.dtype != torch.uint8 or canvases.ndim != 4 or canvases.shape[3] != 3:
            raise UserError(f'canvases must be (B, H, W, 3) uint8, got {tuple(canvases.shape)} '
                            f'{canvases.dtype}')
        if canvases.device != self.device:  # the type and, on CUDA, the GPU index
            raise UserError(f'canvases are on {canvases.device}, the engine runs on {self.device}: '
                            'pass them through backend.upload() (or backend.infer()), with the '
                            'engine\'s GPU current when it is opened')
        if not canvases.is_contiguous():
            raise UserError('canvases must be contiguous: pass them through backend.upload()')
        shape = tuple(int(d) for d in canvases.shape)
        problem = self.limits.problem(*shape[:3])
        if problem:
            raise UserError(f'{problem}: the TensorRT engine {self.engine_path.name} accepts '
                            f'{self.limits.describe()}. Lower --batchsize or the image size, or '
                            f'rebuild it with build_engine.py --max_batch/--max_side (multiples of '
                            f'{eb.SIDE_MULTIPLE} for sides) --force')
        return shape

    def largest_canvas(self):
        return self.limits.max_height, self.limits.max_width

    def check_batch(self, batch):
        super().check_batch(batch)
        if batch < self.limits.min_batch:
            raise UserError(f'batch size {batch} is below the TensorRT engine\'s minimum '
                            f'{self.limits.min_batch}: rebuild it with a smaller --min_batch')

    def describe(self):
        record = self.record
        return dict(backend=self.name, device=str(self.device), engine=str(self.engine_path),
                    tensorrt=str(self.trt.__version__), gpu=self.gpu_info.name,
                    compute_capability=self.gpu_info.compute_capability,
                    precision=record.get('precision'), profile=record.get('profile'),
                    canvas_limits=self.limits.describe(),
                    onnx_sha256=record.get('onnx_sha256'))
