"""The native PyTorch model: FP32 on the CPU; FP16, channels_last and CUDA graphs on a GPU.

This is the GPU path for machines without TensorRT, and the reference the other backends are
checked against on the CPU.
"""

import torch

from ..checkpoint import load_model
from ..config import load_spec
from ..errors import UserError
from .base import Backend

# torch.compile modes that leave CUDA graphs to CudaGraphCache
COMPILE_MODES = ('default', 'max-autotune-no-cudagraphs')


class TorchBackend(Backend):
    name = 'torch'

    def __init__(self, cfg, weight, device=None, precision=None, cuda_graph=True,
                 compile_mode=None, **_):
        if not cfg or not weight:
            raise UserError('the torch backend needs --cfg CONFIG and --weight CHECKPOINT')
        spec = load_spec(cfg)
        model, classes = load_model(spec, weight)
        self._prepare(model, classes, device, precision, cuda_graph, compile_mode)

    @classmethod
    def for_model(cls, model, classes=None, device='cpu', precision=None, cuda_graph=False,
                  compile_mode=None):
        """A backend around a CenterNet already in memory (tests and tools: seeded weights)."""
        backend = cls.__new__(cls)
        backend._prepare(model, classes, device, precision, cuda_graph, compile_mode)
        return backend

    def _prepare(self, model, classes, device, precision, cuda_graph, compile_mode):
        device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        if device.type == 'cuda' and not torch.cuda.is_available():
            raise UserError('--device cuda asked for, but torch sees no CUDA GPU: use --device cpu')
        from coco_labels import COCO_CLASSES
        self.spec = model.spec
        self.classes = classes or COCO_CLASSES
        self.device = device
        if device.type == 'cpu':  # FP32 activations on the host (tools/benchmark_memory.py)
            self.host_bytes_per_pixel = 138.0
        self.precision = precision or ('fp16' if device.type == 'cuda' else 'fp32')
        if self.precision == 'int8':
            raise UserError('the torch backend has no INT8: export a Q/DQ ONNX (export.py '
                            '--precision int8 --calib DIR) and run it with --engine FILE.onnx')
        if self.precision == 'fp16' and device.type != 'cuda':
            raise UserError('FP16 on the torch backend needs a CUDA GPU; use fp32 on the CPU')
        if device.type == 'cuda' and device.index is not None:
            torch.cuda.set_device(device)  # graphs, events and streams use the current device
        if device.type == 'cuda':
            model = model.fuse_batchnorm()
        model = model.to(device)
        if self.precision == 'fp16':
            # FP16 except normalisation and the heads' last convs: the FP16 ONNX's islands.
            model = model.to_mixed_precision(torch.float16)
        self.channels_last = device.type == 'cuda'
        if self.channels_last:  # NHWC: what cuDNN's tensor-core kernels want
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.compile_mode = compile_mode
        forward = self._forward
        if compile_mode:
            if compile_mode not in COMPILE_MODES:
                raise UserError(f'--compile {compile_mode}: choose one of '
                                f'{", ".join(COMPILE_MODES)} (the modes with their own CUDA '
                                'graphs would clash with --cuda_graph)')
            # TorchInductor: 1.9x the eager FP16 FPS on an H200 (docs/performance.md).
            # torch's automatic dynamic shapes: the first shape compiles static, a second one
            # compiles a shape-generic graph that serves later canvas shapes (one more for
            # canvases below inductor's minimum conv size), so a COCO run pays two or three
            # compilations, not one per shape.
            forward = torch.compile(forward, mode=compile_mode)
        self.graphs = CudaGraphCache(forward) if device.type == 'cuda' and cuda_graph else None
        self.forward = forward

    def _forward(self, canvases):
        x = self.model.data_preprocessor(canvases)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model.forward_normalized(x)

    @torch.inference_mode()
    def run(self, canvases):
        if self.graphs is not None:
            return self.graphs(canvases)
        return self.forward(canvases)

    def describe(self):
        info = dict(backend=self.name, device=str(self.device), precision=self.precision,
                    torch=torch.__version__, cuda_graph=self.graphs is not None,
                    compile_mode=self.compile_mode)
        if self.device.type == 'cuda':
            info['gpu'] = torch.cuda.get_device_name(self.device)
        return info


class CudaGraphCache:
    """One captured CUDA graph per input shape: replay costs one launch instead of ~70 kernels.

    Each graph owns its static input/output tensors; `__call__` copies the batch into the static
    input, replays, and returns the static outputs. The graphs share one memory pool, so those
    outputs are valid only until the next call of *any* shape: consume them (decode) on the same
    stream before the next call, as pipeline.Detector does.
    A shape is captured the second time it comes (a COCO run has many shapes seen once) and at
    most `max_graphs` are kept; other calls run eagerly.
    """

    def __init__(self, forward, warmup_iterations=3, max_graphs=32):
        self.forward = forward
        self.warmup_iterations = warmup_iterations
        self.max_graphs = max_graphs
        self.graphs = {}
        self.seen = {}
        self.pool = None

    def __call__(self, canvases):
        key = tuple(canvases.shape)
        if key not in self.graphs:
            self.seen[key] = self.seen.get(key, 0) + 1
            if self.seen[key] < 2 or len(self.graphs) >= self.max_graphs:
                return self.forward(canvases)
            self.graphs[key] = self._capture(canvases)
        graph, static_input, static_outputs = self.graphs[key]
        static_input.copy_(canvases, non_blocking=True)
        graph.replay()
        return static_outputs

    def _capture(self, canvases):
        static_input = canvases.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up cuDNN autotuning outside the capture
            for _ in range(self.warmup_iterations):
                self.forward(static_input)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the loader threads may pin memory while this thread captures.
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode='thread_local'):
            static_outputs = self.forward(static_input)
        self.pool = graph.pool()  # graphs share one memory pool
        return graph, static_input, static_outputs
