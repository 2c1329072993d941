"""The backend interface, and the CUDA upload the GPU backends share (factory.py opens one)."""

from abc import ABC, abstractmethod

import torch

from ..errors import UserError


class Backend(ABC):
    """Runs the network on canvas batches.

    Subclasses set `name`, `device` (where outputs live), `input_name`, `max_batch` (None = no
    limit) and `spec` (the CenterNetSpec: stride, top-k, classes...).
    """

    name = 'backend'
    device = torch.device('cpu')
    input_name = 'canvas'
    max_batch = None
    spec = None
    # Host memory per canvas pixel from the canvas on (canvas, network, decode), for the memory
    # estimate of a full-size picture (preprocess.PixelLimit): the canvas alone where the network
    # runs on a GPU. Measured by tools/benchmark_memory.py ("after decode").
    host_bytes_per_pixel = 3.0

    def upload(self, canvases):
        """CPU uint8 (B, H, W, 3) -> the tensor `run` takes (on the backend's device)."""
        if self.device.type == 'cuda':
            return cuda_upload(canvases, torch.cuda.current_stream(self.device),
                               copy_stream_for(self.device))
        return canvases.to(self.device)

    @abstractmethod
    def run(self, canvases):
        """Uploaded canvases -> (heatmap (B,C,H/4,W/4), wh (B,2,..), offset (B,2,..)) on device."""

    def infer(self, canvases):
        self.check_batch(canvases.shape[0])
        return self.run(self.upload(canvases))

    def check_batch(self, batch):
        if self.max_batch is not None and batch > self.max_batch:
            raise UserError(f'batch size {batch} is beyond the {self.name} model\'s maximum '
                            f'{self.max_batch}: lower --batchsize or rebuild the engine with a '
                            'larger --max_batch')

    def largest_canvas(self):
        """The largest canvas (height, width) the model runs, or None when it has no limit."""
        return None

    def synchronize(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def close(self):
        """Write what the backend keeps for later runs (TensorRT for RTX: its runtime cache)."""

    def describe(self):
        """What the run record says about this backend (versions, device, precision)."""
        return dict(backend=self.name, device=str(self.device))


_COPY_STREAMS = {}


def copy_stream_for(device):
    """One side stream per GPU for host-to-device copies."""
    if device not in _COPY_STREAMS:
        _COPY_STREAMS[device] = torch.cuda.Stream(device)
    return _COPY_STREAMS[device]


def cuda_upload(cpu_tensor, compute_stream, copy_stream):
    """Host -> GPU on `copy_stream`, so it overlaps what `compute_stream` is still doing (the
    previous batch); `compute_stream` then waits for the copy on the GPU, never the host.

    The source is pinned first (an asynchronous copy needs page-locked memory; the loader pins
    batches already), and the result is marked as used by `compute_stream` so the allocator does
    not hand its memory out again before the engine has read it.
    """
    if not cpu_tensor.is_pinned():
        try:
            cpu_tensor = cpu_tensor.pin_memory()
        except RuntimeError:  # no page-locked memory left: the copy is synchronous, still right
            pass
    with torch.cuda.stream(copy_stream):
        device_tensor = cpu_tensor.to(copy_stream.device, non_blocking=True)
    compute_stream.wait_stream(copy_stream)
    device_tensor.record_stream(compute_stream)
    return device_tensor
