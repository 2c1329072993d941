#!/usr/bin/env python3
"""CPU benchmark of the accuracy pipeline (ONNX Runtime), side by side in one run.

On a generated set whose sizes follow COCO val2017 (centernet.synthetic.COCO_LIKE_SIZES):
  (a) accuracy-mode end to end (files -> canvases in workers -> network -> decode) img/s
      vs engine-only img/s on the very same canvas batches;
  (b) canvas grouping (batches of one canvas shape, as inference.py does) vs padding every batch
      to 672 x 672 (the reference's way), engine-only img/s on the same images;
  (c) achieved FP32 GFLOP/s at 672 x 672 vs the model's FLOPs and the CPU's FP32 peak.

    python tools/benchmark_cpu.py [--onnx centernet.onnx] [--images 40] [--batchsize 8]

Prints a table and writes --json (default results/benchmark_cpu.json). Without --onnx, a seeded
model is exported first (its speed is the real model's: same graph, other weights).
"""

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from centernet import onnx_export as ox  # noqa: E402
from centernet.backends.onnxruntime_backend import OrtBackend  # noqa: E402
from centernet.config import load_spec  # noqa: E402
from centernet.dataset import CocoImageSet, make_loader  # noqa: E402
from centernet.fileio import write_json  # noqa: E402
from centernet.model import build_model  # noqa: E402
from centernet.perf import model_gflops  # noqa: E402
from centernet.pipeline import Detector, detect_records  # noqa: E402
from centernet.report import environment, format_table  # noqa: E402
from centernet.synthetic import COCO_LIKE_SIZES, seeded_state_dict, write_coco_dataset  # noqa: E402
from coco_labels import COCO_CLASSES  # noqa: E402

CONFIG = ROOT / 'centernet_r18_8xb16-crop512-140e_coco.py'


def cpu_fp32_peak_gflops():
    """cores x GHz x FP32 FLOPs/cycle (2 FMA units x vector lanes x 2); an estimate from cpuinfo."""
    info = Path('/proc/cpuinfo').read_text()
    flags = re.search(r'^flags\s*:(.*)$', info, re.M).group(1).split()
    mhz = float(re.search(r'^cpu MHz\s*:\s*([\d.]+)', info, re.M).group(1))
    lanes = 16 if 'avx512f' in flags else 8 if 'avx2' in flags else 4
    cores = torch.get_num_threads()
    return cores * mhz / 1e3 * 2 * lanes * 2, dict(cores=cores, mhz=mhz, fp32_lanes=lanes)


def time_batches(backend, batches, repeats):
    """Best-of-`repeats` engine-only seconds over `batches` (lists of canvas tensors)."""
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        for canvases in batches:
            backend.run(canvases)
        best = min(best, time.perf_counter() - start)
    return best


def pad_to(canvases, side):
    padded = torch.zeros((canvases.shape[0], side, side, 3), dtype=torch.uint8)
    padded[:, :canvases.shape[1], :canvases.shape[2]] = canvases
    return padded


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--onnx', help='FP32 ONNX from export.py (default: export a seeded model)')
    parser.add_argument('--images', type=int, default=40)
    parser.add_argument('--batchsize', type=int, default=8)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=2, help='engine-only passes; best is kept')
    parser.add_argument('--json', default='results/benchmark_cpu.json')
    args = parser.parse_args()
    spec = load_spec(CONFIG)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx_path = args.onnx
        if not onnx_path:
            model = build_model(spec)
            model.load_state_dict(seeded_state_dict(model, 0))
            onnx_path = ox.export_fp32(model, tmp / 'seeded.onnx', classes=COCO_CLASSES,
                                       log=lambda *_: None)
        sizes = [COCO_LIKE_SIZES[i % len(COCO_LIKE_SIZES)] for i in range(args.images)]
        write_coco_dataset(tmp / 'coco', sizes, seed=11)
        backend = OrtBackend(onnx_path)
        detector = Detector(backend)
        records = CocoImageSet(tmp / 'coco', COCO_CLASSES).records

        # The exact canvas batches the accuracy pipeline makes, loaded once, up front.
        loaded = [b for lb in make_loader(records, detector.canvas, args.batchsize, workers=0)
                  for b in lb.batches]
        grouped = [b.canvases for b in loaded]
        # Padding every batch to 672^2 needs the images in file order, not grouped.
        canvases_in_order = [None] * len(records)
        for batch in loaded:
            for row, index in enumerate(batch.indices):
                canvases_in_order[index] = batch.canvases[row]
        padded = [torch.stack([pad_to(c[None], 672)[0]
                               for c in canvases_in_order[i:i + args.batchsize]])
                  for i in range(0, len(records), args.batchsize)]

        time_batches(backend, grouped[:1], 1)  # warm-up
        engine_grouped = time_batches(backend, grouped, args.repeats)
        engine_padded = time_batches(backend, padded, args.repeats)
        end_to_end = min(detect_records(detector, records, args.batchsize, workers=args.workers,
                                        progress=False).seconds for _ in range(args.repeats))
        square = [torch.from_numpy(ox.random_canvases(args.batchsize, 672, 672))] * 2
        engine_672 = time_batches(backend, square, args.repeats) / 2

    n = len(records)
    gflops = model_gflops(spec)
    peak, cpu = cpu_fp32_peak_gflops()
    achieved = gflops * args.batchsize / engine_672
    rows = [
        ['engine only, canvas-grouped batches', n / engine_grouped, ''],
        ['accuracy mode end to end (workers, decode)', n / end_to_end,
         f'(a) {engine_grouped / end_to_end:.3f} x engine-only (target >= 0.9)'],
        ['engine only, every batch padded to 672x672', n / engine_padded,
         f'(b) grouping = {engine_padded / engine_grouped:.2f} x padding (target >= 1.25)'],
        ['engine only, 672x672 canvases', args.batchsize / engine_672,
         f'(c) {achieved:.0f} GFLOP/s = {achieved / peak:.0%} of {peak:.0f} peak'],
    ]
    print(format_table(['measurement', 'img/s', 'ratio'], rows,
                       title=f'ONNX Runtime CPU, batch {args.batchsize}, {n} COCO-like images, '
                             f'{torch.get_num_threads()} threads'))
    print(f'model: {gflops:.1f} GFLOP per 672x672 image; peak estimate {peak:.0f} GFLOP/s from '
          f'{cpu}: ideal {peak / gflops:.2f} img/s at 672x672')
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, dict(environment=environment(), batchsize=args.batchsize, images=n,
                               canvas_shapes=sorted({tuple(c.shape[1:3]) for c in grouped}),
                               img_per_s=dict(engine_grouped=n / engine_grouped,
                                              end_to_end=n / end_to_end,
                                              engine_padded_672=n / engine_padded,
                                              engine_672=args.batchsize / engine_672),
                               ratio_a=engine_grouped / end_to_end,
                               ratio_b=engine_padded / engine_grouped,
                               model_gflops_672=gflops, cpu_peak_gflops=peak, cpu=cpu,
                               achieved_gflops_672=achieved), indent=1)


if __name__ == '__main__':
    main()
