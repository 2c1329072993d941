"""Performance mode: three labelled tiers, timed the way trtexec times (warm-up, then many runs).

    engine        the network alone on a static B x 672 x 672 x 3 canvas already on the device
                  (the reference's definition: compare with its 799.7 FPS here)
    engine+io     host canvas -> device, network, decode, final boxes -> host
    pipeline      real files: decode + canvas in workers, network, decode, in canvas batches
GPU times come from CUDA events, CPU times from the wall clock.
"""

import shutil
import subprocess
import time

import numpy as np
import torch

from .onnx_export import random_canvases

REFERENCE_SIDE = 672


class Timer:
    """Per-iteration times in seconds: CUDA events on a GPU, perf_counter elsewhere."""

    def __init__(self, device):
        self.cuda = device.type == 'cuda'
        self.times = []

    def measure(self, fn, iterations):
        for _ in range(iterations):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                self.times.append(start.elapsed_time(end) / 1000.0)
            else:
                begin = time.perf_counter()
                fn()
                self.times.append(time.perf_counter() - begin)
        return self.times


def latency_stats(times, batch):
    times = np.asarray(times)
    mean = float(times.mean())
    return dict(batch=batch, iterations=len(times), fps=batch / mean, latency_ms_mean=mean * 1e3,
                latency_ms_p50=float(np.percentile(times, 50)) * 1e3,
                latency_ms_p90=float(np.percentile(times, 90)) * 1e3,
                latency_ms_p99=float(np.percentile(times, 99)) * 1e3)


def time_engine(backend, batch, side=REFERENCE_SIDE, warmup=10, iterations=50):
    canvases = backend.upload(torch.from_numpy(random_canvases(batch, side, side)))
    backend.check_batch(batch)
    for _ in range(warmup):
        backend.run(canvases)
    backend.synchronize()
    return latency_stats(Timer(backend.device).measure(lambda: backend.run(canvases), iterations),
                         batch)


def time_engine_io(detector, batch, side=REFERENCE_SIDE, warmup=10, iterations=50):
    canvases = torch.from_numpy(random_canvases(batch, side, side))
    if detector.backend.device.type == 'cuda':
        canvases = canvases.pin_memory()
    borders = torch.zeros((batch, 4), dtype=torch.float32)

    def step():
        detector(canvases, borders)  # ends with the boxes on the host: a full round trip

    for _ in range(warmup):
        step()
    return latency_stats(Timer(torch.device('cpu')).measure(step, iterations), batch)


def model_gflops(spec, side=REFERENCE_SIDE):
    """FLOPs (2 x multiply-adds) of one side x side image, counted by torch's FlopCounterMode
    (45.1 for CenterNet-R18 at 672 x 672)."""
    from torch.utils.flop_counter import FlopCounterMode
    from .model import build_model
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        build_model(spec)(torch.zeros((1, side, side, 3), dtype=torch.uint8))
    return counter.get_total_flops() / 1e9


def gpu_clocks():
    """SM/memory clocks from nvidia-smi where it exists (clocks change FPS by tens of percent)."""
    if not shutil.which('nvidia-smi'):
        return None
    try:
        out = subprocess.run(['nvidia-smi', '--query-gpu=name,clocks.sm,clocks.mem,clocks.max.sm,'
                              'power.limit', '--format=csv,noheader'], capture_output=True,
                             text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None
