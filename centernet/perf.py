"""Performance mode: three labelled tiers, timed the way trtexec times (warm-up, then many runs).

    engine        the network alone on a static B x 672 x 672 x 3 canvas already on the device
                  (the reference's definition: compare with its 799.7 FPS here)
    engine+io     host canvas -> device, network, decode, final boxes -> host
    pipeline      real files: decode + canvas in workers, network, decode, in canvas batches
GPU times come from CUDA events, CPU times from the wall clock. Warm-up and timing are sized by
time (`Budget.seconds`: about that long, at least a few runs, so a CPU batch of several seconds
still gets a spread) or by count (`Budget.count`, what scripts and tests pass).
"""

import shutil
import subprocess
import time
from dataclasses import dataclass

import numpy as np
import torch

from .onnx_export import random_canvases

REFERENCE_SIDE = 672
TIMED_MINIMUM = 3  # timed runs per tier however slow one is: a spread needs a few


@dataclass(frozen=True)
class Budget:
    """How many runs: exactly `count`, or as many as fit in about `seconds` (at least `minimum`)."""

    count: int = None
    seconds: float = 0.0
    minimum: int = 1

    @classmethod
    def of(cls, value, minimum=1):
        """An int is a count (the old interface), a Budget is kept."""
        return value if isinstance(value, Budget) else cls(count=int(value), minimum=minimum)

    def more(self, runs, elapsed):
        if self.count is not None:
            return runs < self.count
        return runs < self.minimum or elapsed < self.seconds

    def describe(self):
        if self.count is not None:
            return f'{self.count} run(s)'
        return f'about {self.seconds:g} s (at least {self.minimum} run(s))'


def repeat(fn, budget):
    """Call `fn` as often as `budget` says (untimed: warm-up)."""
    start, runs = time.perf_counter(), 0
    while budget.more(runs, time.perf_counter() - start):
        fn()
        runs += 1
    return runs


class Timer:
    """Per-iteration times in seconds: CUDA events on a GPU, perf_counter elsewhere."""

    def __init__(self, device):
        self.cuda = device.type == 'cuda'
        self.times = []

    def measure(self, fn, iterations):
        """Time `fn` `iterations` times (an int or a Budget)."""
        budget = Budget.of(iterations)
        began = time.perf_counter()
        while budget.more(len(self.times), time.perf_counter() - began):
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
    """FPS (batch / mean time) with its spread over the runs (FPS of the p90 and p10 latencies):
    a wide range says the number is noisy."""
    times = np.asarray(times)
    mean = float(times.mean())
    p10, p50, p90, p99 = (float(np.percentile(times, q)) for q in (10, 50, 90, 99))
    return dict(batch=batch, iterations=len(times), seconds=float(times.sum()), fps=batch / mean,
                fps_p10=batch / p90, fps_p90=batch / p10, latency_ms_mean=mean * 1e3,
                latency_ms_p50=p50 * 1e3, latency_ms_p90=p90 * 1e3, latency_ms_p99=p99 * 1e3)


def format_fps(value):
    """Three significant digits, one decimal from 100 up: 0.410, 41.2, 812.3."""
    return f'{value:.1f}' if value >= 99.95 else f'{value:#.3g}'



def time_engine(backend, batch, side=REFERENCE_SIDE, warmup=10, iterations=50):
    canvases = backend.upload(torch.from_numpy(random_canvases(batch, side, side)))
    backend.check_batch(batch)
    repeat(lambda: backend.run(canvases), Budget.of(warmup))
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

    repeat(step, Budget.of(warmup))
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
