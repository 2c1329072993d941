#!/usr/bin/env python3
"""Engine-only FPS of the torch CUDA backend's variants, side by side in one process.

    python tools/benchmark_torch_cuda.py [--batchsize 32] [--side 672] [--compile default ...]
        [--inductor freezing=True ...] [--profile]

Each row is one way of running the same seeded network on the same uint8 batch already on the
GPU (the "engine" tier of perf mode): eager vs CUDA graph, NCHW vs channels_last, cuDNN's
algorithm search off vs on, torch.compile modes and inductor settings. It prints FPS, p50 latency
and achieved TFLOP/s against the model's 45.1 GFLOP/image (with --profile, each row's most
expensive CUDA kernels too), and writes --json. Rows run in the order given, so a
machine that warms up favours later rows: --repeat runs the whole list again.
Needs a CUDA GPU.
"""

import argparse
import ast
import contextlib
import copy
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from centernet.backends.torch_backend import TorchBackend  # noqa: E402
from centernet.config import load_spec  # noqa: E402
from centernet.fileio import write_json  # noqa: E402
from centernet.model import build_model  # noqa: E402
from centernet.onnx_export import random_canvases  # noqa: E402
from centernet.perf import gpu_clocks, model_gflops, time_engine  # noqa: E402
from centernet.report import environment, format_table  # noqa: E402
from centernet.synthetic import seeded_state_dict  # noqa: E402

CONFIG = ROOT / 'centernet_r18_8xb16-crop512-140e_coco.py'

# name -> (TorchBackend options, cudnn.benchmark, keep channels_last)
BASE_VARIANTS = {
    'fp16 eager': (dict(precision='fp16', cuda_graph=False), False, True),
    'fp16 eager NCHW': (dict(precision='fp16', cuda_graph=False), False, False),
    'fp16 graph (default)': (dict(precision='fp16', cuda_graph=True), False, True),
    'fp16 graph + cudnn.benchmark': (dict(precision='fp16', cuda_graph=True), True, True),
    'fp32 (tf32) graph': (dict(precision='fp32', cuda_graph=True), False, True),
}


def variants(compile_modes, inductor_settings=()):
    table = dict(BASE_VARIANTS)
    for mode in compile_modes:
        table[f'fp16 graph + compile {mode}'] = (
            dict(precision='fp16', cuda_graph=True, compile_mode=mode), True, True)
    for setting in inductor_settings:
        table[f'fp16 graph + compile default, {setting}'] = (
            dict(precision='fp16', cuda_graph=True, compile_mode='default'), True, True, setting)
    return table


def inductor_setting(setting):
    """'freezing=True' -> a context that sets torch._inductor.config.freezing while compiling."""
    import torch._inductor.config as inductor_config
    if setting is None:
        return contextlib.nullcontext()
    key, _, value = setting.partition('=')
    return inductor_config.patch({key: ast.literal_eval(value)})


def top_kernels(backend, canvases, count=10):
    """The CUDA kernels that take the most time in 5 runs, as (name, ms per run, calls per run)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            backend.run(canvases)
        backend.synchronize()
    events = sorted(prof.key_averages(), key=lambda e: e.device_time_total, reverse=True)
    return [(e.key[:90], e.device_time_total / 5e3, e.count / 5) for e in events[:count]]


def open_variant(model, options, cudnn_benchmark, channels_last):
    torch.backends.cudnn.benchmark = cudnn_benchmark  # process-wide: set per row
    backend = TorchBackend.for_model(copy.deepcopy(model), device='cuda', **options)
    if not channels_last:
        backend.channels_last = False
        backend.model = backend.model.to(memory_format=torch.contiguous_format)
    return backend


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batchsize', type=int, default=32)
    parser.add_argument('--side', type=int, default=672)
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--iterations', type=int, default=100)
    parser.add_argument('--compile', nargs='*', default=['default'], metavar='MODE',
                        help='torch.compile modes to add as rows (default: default; '
                             'max-autotune-no-cudagraphs takes minutes)')
    parser.add_argument('--inductor', nargs='*', default=[], metavar='KEY=VALUE',
                        help='more compiled rows, each with one torch._inductor.config setting '
                             '(e.g. freezing=True)')
    parser.add_argument('--profile', action='store_true',
                        help='print each row\'s most expensive CUDA kernels (first pass)')
    parser.add_argument('--repeat', type=int, default=2, help='passes over the rows')
    parser.add_argument('--json', default='results/benchmark_torch_cuda.json')
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit('error: no CUDA GPU visible to torch: this benchmark is for GPU machines')
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    spec = load_spec(CONFIG)
    model = build_model(spec)
    model.load_state_dict(seeded_state_dict(model, 0))
    gflops = model_gflops(spec, args.side)
    table = variants(args.compile, args.inductor)
    results = {name: [] for name in table}
    setup_seconds, kernels = {}, {}
    for _ in range(args.repeat):
        for name, (options, cudnn_benchmark, channels_last, *setting) in table.items():
            start = time.perf_counter()
            with inductor_setting(setting[0] if setting else None):
                backend = open_variant(model, options, cudnn_benchmark, channels_last)
                stats = time_engine(backend, args.batchsize, args.side, warmup=args.warmup,
                                    iterations=args.iterations)
            setup_seconds.setdefault(name, time.perf_counter() - start)
            results[name].append(stats)
            print(f'{name}: {stats["fps"]:.0f} img/s', flush=True)
            if args.profile and name not in kernels:
                canvases = backend.upload(torch.from_numpy(
                    random_canvases(args.batchsize, args.side, args.side)))
                kernels[name] = top_kernels(backend, canvases)
                print(format_table(['kernel', 'ms per batch', 'calls per batch'], kernels[name],
                                   title=name), flush=True)
            del backend
            torch.cuda.empty_cache()
    rows = []
    for name, runs in results.items():
        best = max(runs, key=lambda stats: stats['fps'])
        rows.append([name, best['fps'], best['fps'] * gflops / 1e3, best['latency_ms_p50'],
                     ' / '.join(f'{stats["fps"]:.0f}' for stats in runs),
                     setup_seconds[name]])
    print(format_table(['variant', 'FPS (best)', 'TFLOP/s', 'p50 ms', 'FPS per pass',
                        'first pass s'], rows,
                       title=f'torch CUDA engine only, batch {args.batchsize}, '
                             f'{args.side}x{args.side}, {gflops:.1f} GFLOP/image'))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, dict(environment=environment(), gpu_clocks=gpu_clocks(),
                               gflops_per_image=gflops, args=vars(args), results=results,
                               setup_seconds=setup_seconds, kernels=kernels), indent=1)
    print(f'report: {args.json}')


if __name__ == '__main__':
    main()
