#!/usr/bin/env python3
"""Serving overhead: serve.py's Triton server against inference.py's direct pipeline, in one run.

On the same images and backend:
  direct   inference.py's accuracy-mode pipeline (loader threads, canvas-shape batches of
           --batchsize, backend, decode): images/s
  served   serve.py's server (the kit's Python-backend model, dynamic batches of up to
           --batchsize), each image one HTTP request, at each --concurrency (closed loop: that
           many clients, each sending its next request when the last one is answered):
           requests/s, p50 / p99 latency, the mean batch Triton formed
  ratio    served requests/s / direct images/s: what serving costs (or gains) on this machine

    python3 tools/benchmark_serving.py [--engine centernet.onnx] [--datasets DIR] [--images 48]
        [--concurrency 1 8 32] [--batchsize 32] [--passes 2]

Without --engine a seeded model is exported first (its speed is the real model's: same graph,
other weights); without --datasets a set of --images generated pictures in COCO val2017's sizes.
Prints a table and writes --json (default results/benchmark_serving.json). The clients run on
the same machine as the server and take CPU from it, as the direct pipeline's loader does.
"""

import argparse
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import serve  # noqa: E402
from common import DEFAULT_CONFIG, run_main  # noqa: E402
from centernet.backends import open_backend  # noqa: E402
from centernet.dataset import CocoImageSet  # noqa: E402
from centernet.fileio import write_json  # noqa: E402
from centernet.pipeline import Detector, detect_records  # noqa: E402
from centernet.report import environment, format_table  # noqa: E402
from centernet.serve_cli import describe_model  # noqa: E402
from centernet.serving import require  # noqa: E402
from centernet.serving.client import ServedDetector  # noqa: E402
from centernet.serving.repository import Batching, write_repository  # noqa: E402
from centernet.serving.server import BundledServer, Endpoints, free_ports  # noqa: E402
from centernet.synthetic import COCO_LIKE_SIZES, write_coco_dataset  # noqa: E402


def seeded_onnx(folder):
    """A seeded model exported by export.py (precision gate on)."""
    import torch
    import export
    from common import run_main
    from centernet.config import load_spec
    from centernet.model import build_model
    from centernet.synthetic import seeded_state_dict
    spec = load_spec(DEFAULT_CONFIG)
    checkpoint, onnx_path = folder / 'seeded.pth', folder / 'centernet.onnx'
    torch.save({'meta': {}, 'state_dict': seeded_state_dict(build_model(spec), 0)}, checkpoint)
    try:
        run_main(export.main, ['--weight', str(checkpoint), '--output', str(onnx_path)])
    except SystemExit as exit_info:
        if exit_info.code:
            raise
    return onnx_path


class Direct:
    """inference.py's pipeline on `records` (img/s), timed before and after the server's levels:
    the machine's load may change between them (a shared machine), and both are reported."""

    def __init__(self, args, records):
        backend = open_backend(args.backend, args.engine, cfg=args.cfg, device=args.device,
                               precision=args.precision, threads=args.threads)
        self.detector, self.records, self.batch = Detector(backend), records, args.batchsize
        detect_records(self.detector, records, self.batch, progress=False)  # warm-up
        self.runs = []

    def time(self):
        found = detect_records(self.detector, self.records, self.batch, progress=False)
        self.runs.append(dict(seconds=found.seconds,
                              images_per_second=len(self.records) / found.seconds,
                              mean_batch=len(self.records) / max(found.batches, 1)))

    def summary(self):
        rates = [run['images_per_second'] for run in self.runs]
        return dict(images=len(self.records), runs=self.runs,
                    images_per_second=float(np.mean(rates)), spread=[min(rates), max(rates)],
                    mean_batch=self.runs[0]['mean_batch'])


def closed_loop(detector, payloads, concurrency, requests):
    """`concurrency` clients send `requests` requests in turn over `payloads`: (wall seconds,
    latencies in seconds)."""
    latencies = [0.0] * requests
    counter = iter(range(requests))
    lock = threading.Lock()

    def client():
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            sent = time.perf_counter()
            detector.detect(payloads[index % len(payloads)])
            latencies[index] = time.perf_counter() - sent

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    return time.perf_counter() - start, latencies


def served(args, records, scratch, direct):
    serve_args = serve.parse_args(['--engine', str(args.engine), '--backend', args.backend,
                                   '--threads', str(args.threads), '--batchsize',
                                   str(args.batchsize), '--instances', str(args.instances),
                                   '--max_queue_delay_us', str(args.max_queue_delay_us)]
                                  + (['--device', args.device] if args.device else [])
                                  + (['--precision', args.precision] if args.precision else []))
    model = describe_model(serve_args)
    repository = scratch / 'models'
    write_repository(repository, model, Batching(args.batchsize, args.instances,
                                                 args.max_queue_delay_us), link=True)
    http, grpc, metrics = free_ports(3)
    payloads = [Path(r.path).read_bytes() for r in records]
    levels = []
    with BundledServer(repository, scratch / 'workspace',
                       Endpoints('127.0.0.1', http, grpc, metrics),
                       scratch / 'triton.log') as server:
        detector = ServedDetector(f'127.0.0.1:{http}')
        closed_loop(detector, payloads, max(args.concurrency), len(payloads))  # warm-up
        for concurrency in args.concurrency:
            requests = max(args.passes * len(payloads), concurrency)
            before = detector.statistics(server.access_token)
            seconds, latencies = closed_loop(detector, payloads, concurrency, requests)
            counted = {key: value - before[key]
                       for key, value in detector.statistics(server.access_token).items()}
            levels.append(dict(concurrency=concurrency, requests=requests, seconds=seconds,
                               requests_per_second=requests / seconds,
                               p50_ms=1e3 * float(np.percentile(latencies, 50)),
                               p99_ms=1e3 * float(np.percentile(latencies, 99)),
                               mean_batch=counted['requests'] / max(counted['batches'], 1),
                               # the model instance's own time: decode_image .. decode_heads
                               model_seconds=counted['compute_seconds'],
                               model_share=counted['compute_seconds'] / seconds))
        detector.close()
        direct.time()  # again, with the server idle
    return model, levels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--engine', help='model as serve.py takes it (default: a seeded ONNX)')
    parser.add_argument('--backend', default='auto')
    parser.add_argument('--cfg', default=DEFAULT_CONFIG)
    parser.add_argument('--device')
    parser.add_argument('--precision')
    parser.add_argument('--threads', type=int, default=0, help='ONNX Runtime threads')
    parser.add_argument('--datasets', help='COCO folder (default: generated images)')
    parser.add_argument('--images', type=int, default=48, help='images used (the first N)')
    parser.add_argument('--batchsize', type=int, default=32,
                        help='direct batch size and the server\'s largest dynamic batch')
    parser.add_argument('--concurrency', type=int, nargs='+', default=[1, 8, 32])
    parser.add_argument('--passes', type=int, default=2,
                        help='requests per concurrency level: this many passes over the images')
    parser.add_argument('--instances', type=int, default=1)
    parser.add_argument('--max_queue_delay_us', type=int, default=2000)
    parser.add_argument('--json', default='results/benchmark_serving.json')
    args = parser.parse_args(argv)
    # Before the direct pass, which takes minutes on a CPU: the server's half needs these.
    for module in ('pytriton', 'tritonclient.http', 'tritonclient.grpc.model_config_pb2'):
        require(module, 'tools/benchmark_serving.py')
    with tempfile.TemporaryDirectory(prefix='benchmark-serving-') as scratch:
        scratch = Path(scratch)
        if not args.engine:
            args.engine = str(seeded_onnx(scratch))
        if not args.datasets:
            sizes = [COCO_LIKE_SIZES[i % len(COCO_LIKE_SIZES)] for i in range(args.images)]
            write_coco_dataset(scratch / 'coco', sizes, seed=1)
            args.datasets = str(scratch / 'coco')
        from coco_labels import COCO_CLASSES
        records = CocoImageSet(args.datasets, COCO_CLASSES).records[:args.images]
        print(f'{len(records)} images; direct pipeline, then the server at concurrency '
              f'{", ".join(map(str, args.concurrency))}', flush=True)
        direct = Direct(args, records)
        direct.time()
        model, levels = served(args, records, scratch, direct)
    baseline = direct.summary()
    rate = baseline['images_per_second']
    low, high = baseline['spread']
    rows = [[f'direct (inference.py), {low:.2f}-{high:.2f}', f'{rate:.2f}', '-', '-',
             f'{baseline["mean_batch"]:.1f}', '-', '1.00']]
    rows += [[f'served, concurrency {level["concurrency"]}', f'{level["requests_per_second"]:.2f}',
              f'{level["p50_ms"]:.0f}', f'{level["p99_ms"]:.0f}', f'{level["mean_batch"]:.1f}',
              f'{100 * level["model_share"]:.0f}', f'{level["requests_per_second"] / rate:.2f}']
             for level in levels]
    print(format_table(['pipeline', 'img/s', 'p50 ms', 'p99 ms', 'batch', 'model %', 'ratio'],
                       rows, title=f'{model.backend} ({model.describe.get("precision", "")}) on '
                                   f'{"GPU" if model.gpu else "CPU"}, {len(records)} images; '
                                   'direct: mean of a run before and one after the server\'s; '
                                   'ratio: served requests/s over direct images/s; model %: '
                                   'share of the wall time inside the model instance'))
    record = dict(tool='benchmark_serving', environment=environment(), backend=model.describe,
                  images=len(records), batchsize=args.batchsize, instances=args.instances,
                  max_queue_delay_us=args.max_queue_delay_us, direct=baseline,
                  served=levels, ratios={str(level['concurrency']):
                                         level['requests_per_second'] / rate
                                         for level in levels})
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, record, indent=1)
    print(f'record: {args.json}')
    return 0


if __name__ == '__main__':
    run_main(main)
