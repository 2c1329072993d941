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

TensorRT for RTX
    The sidecar says which runtime built the engine, and that one opens it. On TensorRT for RTX
    the backend first asks the runtime whether the engine can run on this GPU
    (get_engine_validity), then creates its context through an IRuntimeConfig (engine.api.RtxApi):
    EAGER shape specialisation, so every shape runs its own compiled kernels from its first batch
    on (serving included: the kernels the self-check judged, the same detections for the first
    request of a shape as for the later ones), and a runtime cache file beside the engine file
    (<engine>.runtime_cache, the link's target for a linked engine), loaded at open, saved after
    the context's JIT when it was not reused, then at most once a minute while new shapes come,
    and at close() or the end of the process.

Everything that needs CUDA is in `CudaStreamDevice`; the contract tests inject a CPU stand-in with
the same methods (tests/test_tensorrt_contract.py), and a fake `tensorrt` module.
An engine whose self-check is pending is checked by engine.check.open_checked_engine (what
centernet.backends.open_backend calls) before this backend serves it.
"""

import hashlib
import math
import sys
import weakref
from pathlib import Path

import torch

from .. import onnx_export as ox
from ..config import CenterNetSpec
from ..engine import parts
from ..engine.api import RTX_INVALIDITY_ADVICE, current_gpu, import_tensorrt, torch_dtype_for
from ..engine.profile import SIDE_MULTIPLE
from ..engine.sidecar import (read_sidecar, rebuild_command, rebuild_for_this_gpu,
                              runtime_cache_path, sidecar_path)
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
        if height % SIDE_MULTIPLE or width % SIDE_MULTIPLE:
            return f'canvas {height}x{width} is not a multiple of {SIDE_MULTIPLE}'
        return None

    def check_min_batch(self, batch):
        if batch < self.min_batch:
            raise UserError(f'batch size {batch} is below the TensorRT engine\'s minimum '
                            f'{self.min_batch}: rebuild it with a smaller --min_batch')

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
    `warn_unchecked=False` is for the self-check (engine.check), which runs an engine before it
    has a passed check; `rebuild_path` is the engine path rebuild advice names (the self-check
    runs a new engine at a staging path beside it). Other options are for other backends and are
    ignored.
    """

    name = 'tensorrt'

    def __init__(self, engine_path, gpu=None, warn_unchecked=True, rebuild_path=None,
                 log=print, **options):
        self.engine_path = Path(engine_path)
        self.rebuild_path = Path(rebuild_path or engine_path)
        self.log = log
        built_by = self._runtime_in_sidecar()
        self.api = import_tensorrt(built_by)
        self.trt = self.api.trt
        self.gpu_info = current_gpu()
        self.record = read_heads_sidecar(self.engine_path)
        self._check_built_here()
        if warn_unchecked:
            self.warn_unless_checked()
        blob = read_engine_file(self.engine_path, self.record, self.rebuild_path)

        self.logger = parts.make_logger(self.trt)  # prints warnings, keeps the errors
        self.runtime = self.trt.Runtime(self.logger)  # kept: it must outlive the engine
        self._check_validity(blob)
        self.engine = self.runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise UserError(f'{self.api.describe()} could not deserialize {self.engine_path} '
                            f'({self._logged()}): {self._rebuild_hint()}')
        self.dtypes = self._check_tensors()
        min_shape, _, max_shape = (tuple(s) for s in
                                   self.engine.get_tensor_profile_shape(ox.INPUT_NAME, 0))
        self.limits = CanvasLimits(min_shape, max_shape)
        # The GPU side first: TensorRT for RTX's runtime cache needs the CUDA context current.
        self.gpu = gpu if gpu is not None else CudaStreamDevice()
        self.device = self.gpu.device
        # Beside the engine file itself: serve.py's model instances open it through a symbolic
        # link in a temporary repository, and the kernels must outlive that.
        self.runtime_cache = (parts.RuntimeCacheFile(
            runtime_cache_path(self.engine_path.resolve()), log)
            if self.api.builds_without_gpu else None)
        # TensorRT for RTX compiles the engine's kernels for this GPU here (its JIT).
        self.context, self._context_state = self.api.create_context(self.engine,
                                                                    self.runtime_cache)
        if self.context is None:
            raise UserError(f'TensorRT could not create an execution context for '
                            f'{self.engine_path} ({self._logged()}; out of GPU memory?): free GPU '
                            'memory or rebuild with a smaller --max_batch/--max_side')
        self._flush_runtime_cache = lambda: None
        if self.runtime_cache is not None:
            cache = self._context_state[1]
            if not self.runtime_cache.loaded:  # the context's JIT: a new or a refused file
                self.runtime_cache.save(cache)
            # Kernels compiled later are written by close(), or when the process ends.
            self._flush_runtime_cache = weakref.finalize(self, self.runtime_cache.flush, cache)
        self.shapes_seen = set()

        self.spec = CenterNetSpec.from_dict(self.record['spec'])
        self.classes = tuple(self.record.get('classes') or ())
        self.max_batch = self.limits.max_batch
        self.outputs = {name: OutputBuffer(self.gpu.empty, self.dtypes[name])
                        for name in ox.OUTPUT_NAMES}

    # --- opening ----------------------------------------------------------------------------

    def _runtime_in_sidecar(self):
        """The runtime that built the engine (only it can open it); 'auto' when the sidecar is
        missing or unreadable, which is reported after the runtime's own checks."""
        try:
            return read_sidecar(self.engine_path)['runtime']
        except UserError:
            return 'auto'

    def _rebuild_hint(self):
        return f'rebuild it with {rebuild_command(self.record, self.rebuild_path)}'

    def _logged(self):
        errors = self.logger.take_errors()
        return f'TensorRT said: {errors[-1]}' if errors else 'TensorRT logged no error'

    def warn_unless_checked(self):
        """One line when build_engine's self-check did not pass (skipped, pending, or no FP32
        ONNX), and one when the ONNX it was built from skipped export.py's precision gate."""
        check = self.record.get('self_check') or {}
        status = check.get('status')
        if status == 'pending':
            print(f'warning: {self.engine_path} has a pending self-check (it could not run where '
                  'it was built), and it runs only when the engine is opened through '
                  'centernet.backends.open_backend (as inference.py does): these detections are '
                  'not verified against ONNX Runtime', file=sys.stderr)
        elif status != 'passed':
            said = status or 'none recorded'
            if check.get('reason'):
                said += f': {check["reason"]}'
            print(f'warning: {self.engine_path} has no passed self-check (sidecar: {said}): its '
                  'detections are not verified against ONNX Runtime; rebuild it without '
                  '--skip-check (build_engine.py --force) to check it', file=sys.stderr)
        warning = ox.gate_skipped_warning(self.record.get('onnx_metadata') or {},
                                          f'the ONNX {self.engine_path} was built from')
        if warning:
            print(warning, file=sys.stderr)

    def _check_built_here(self):
        """TensorRT engines load only on the version and GPU architecture that built them;
        TensorRT for RTX engines on the version that built them, on their targets."""
        errors, warnings = self.api.compatibility(self.record, self.gpu_info)
        if errors:
            raise UserError(f'{self.engine_path} was {errors[0]}: {self._advice_for_this_gpu()}')
        for warning in warnings:
            print(f'warning: {self.engine_path} was {warning}', file=sys.stderr)

    def _advice_for_this_gpu(self):
        """The rebuild advice that, followed on this GPU, gives an engine that runs here: the
        sidecar's own command, but for a TensorRT for RTX engine whose targets leave this GPU
        out (the same command would build the same engine again)."""
        if self.api.builds_without_gpu and self.gpu_info.compute_capability not in \
                (self.record.get('targets') or []):
            return rebuild_for_this_gpu(self.record, self.rebuild_path, self.api, self.gpu_info)
        return self._rebuild_hint()

    def _check_validity(self, blob):
        """TensorRT for RTX says up front whether this GPU, driver and library can run it."""
        answer = self.api.engine_validity(self.runtime, blob)
        if answer is None:
            return
        validity, reasons = answer
        gpu = f'{self.gpu_info.name}, sm {self.gpu_info.compute_capability}'
        for_this_gpu = rebuild_for_this_gpu(self.record, self.rebuild_path, self.api,
                                            self.gpu_info)
        if validity == 'INVALID':
            advice = '; '.join(RTX_INVALIDITY_ADVICE.get(r, r) for r in reasons) or \
                self._logged()
            # Not this GPU: the sidecar's own targets (which claim it) would build the same
            # engine again.
            command = (f': {for_this_gpu}' if 'UNSUPPORTED_CC' in reasons else
                       f' ({rebuild_command(self.record, self.rebuild_path)})')
            raise UserError(f'{self.api.describe()} says {self.engine_path} cannot run here '
                            f'({gpu}; {", ".join(reasons) or "no reason given"}): {advice}'
                            f'{command}')
        if validity != 'VALID':
            print(f'warning: {self.api.describe()} says {self.engine_path} runs here ({gpu}) '
                  f'but {validity.lower()}ly ({", ".join(reasons) or "no reason given"}): for '
                  f'full speed, {for_this_gpu}', file=sys.stderr)

    def close(self):
        """Write the kernels TensorRT for RTX compiled since the last save to the runtime cache
        (the end of the process does it too)."""
        self._flush_runtime_cache()

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
            dtypes[name] = torch_dtype_for(got_dtype)
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
        if shape not in self.shapes_seen and self.runtime_cache is not None:
            self.shapes_seen.add(shape)  # TensorRT for RTX compiled this shape's kernels
            self.runtime_cache.grew(self._context_state[1])
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
                            f'{SIDE_MULTIPLE} for sides) --force')
        return shape

    def largest_canvas(self):
        return self.limits.max_height, self.limits.max_width

    def check_batch(self, batch):
        super().check_batch(batch)
        self.limits.check_min_batch(batch)

    def describe(self):
        return dict(describe_engine(self.engine_path, self.record, self.limits),
                    device=str(self.device), runtime=self.api.runtime, tensorrt=self.api.version,
                    gpu=self.gpu_info.name, compute_capability=self.gpu_info.compute_capability)


class SidecarEngine(Backend):
    """An engine as its sidecar describes it, read without a GPU and without TensorRT: what
    serve.py --write_repository needs to write a model repository for another machine (the
    spec, classes, canvas and batch limits, the record). It does not run."""

    name = 'tensorrt'
    device = torch.device('cuda')  # where the engine runs: Triton's KIND_GPU instances

    def __init__(self, engine_path):
        self.engine_path = Path(engine_path)
        self.record = read_heads_sidecar(self.engine_path)
        read_engine_file(self.engine_path, self.record, self.engine_path)
        canvas = self.record.get('canvas_shapes') or {}
        if not {'min', 'max'} <= canvas.keys():
            raise UserError(f'{sidecar_path(self.engine_path)} has no canvas shapes: rebuild it '
                            f'with {rebuild_command(self.record, self.engine_path)}')
        self.limits = CanvasLimits(canvas['min'], canvas['max'])
        self.spec = CenterNetSpec.from_dict(self.record['spec'])
        self.classes = tuple(self.record.get('classes') or ())
        self.max_batch = self.limits.max_batch

    def run(self, canvases):
        raise UserError(f'{self.engine_path} was read from its sidecar only, without a GPU, and '
                        'does not run: open it with centernet.backends.open_backend')

    def largest_canvas(self):
        return self.limits.max_height, self.limits.max_width

    def check_batch(self, batch):
        super().check_batch(batch)
        self.limits.check_min_batch(batch)

    def describe(self):
        return dict(describe_engine(self.engine_path, self.record, self.limits), device='cuda',
                    runtime=self.record.get('runtime'), tensorrt=self.record.get('runtime_version'))


def read_heads_sidecar(engine_path):
    """The sidecar of the heads engine at `engine_path` (the network inference.py runs)."""
    if not engine_path.is_file():
        raise UserError(f'{engine_path} not found: build it with python3 build_engine.py '
                        '--model MODEL.onnx --engine ENGINE (see README)')
    record = read_sidecar(engine_path)
    if record.get('end2end'):
        raise UserError(f'{engine_path} is an end-to-end engine (canvas, borders -> boxes, '
                        'scores, labels), for a serving stack such as Triton; this backend runs '
                        'the heads engine: build one from the heads ONNX (export.py without '
                        '--end2end)')
    return record


def read_engine_file(engine_path, record, rebuild_path):
    """The engine's bytes, which must be those its sidecar describes."""
    blob = engine_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != record.get('engine_sha256'):
        raise UserError(f'{engine_path} does not match its sidecar (the engine file was replaced '
                        f'after the build): rebuild it with '
                        f'{rebuild_command(record, rebuild_path)}')
    return blob


def describe_engine(engine_path, record, limits):
    """What the run record says of an engine, from its sidecar and profile."""
    return dict(backend='tensorrt', engine=str(engine_path), precision=record.get('precision'),
                profile=record.get('profile'), canvas_limits=limits.describe(),
                targets=record.get('targets'),
                self_check=(record.get('self_check') or {}).get('status'),
                onnx_sha256=record.get('onnx_sha256'))
