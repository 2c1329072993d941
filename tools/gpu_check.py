#!/usr/bin/env python3
"""GPU check in one command: accuracy parity of the GPU backends, then the FPS tiers at batch 32.

    python tools/gpu_check.py [--weight CKPT] [--images 96] [--batchsize 32] [--json PATH]

1. Makes (in a temp folder) a seeded checkpoint unless --weight is given, its FP32 and FP16 ONNX,
   and --images generated pictures of COCO-like sizes.
2. Detections with ONNX Runtime on the CPU (FP32): the reference.
3. The same pictures through torch CUDA FP32 (TF32 off for that row only), torch CUDA FP16
   (channels_last, CUDA graphs), the same with torch.compile and, when TensorRT runs on this GPU
   (`tensorrt`, or else `tensorrt_rtx` when the GPU is one of its targets: the scripts' choice),
   FP32 (built without TF32) and FP16 engines built by build_engine (which self-checks each
   against ONNX Runtime CPU first): the share of the reference's detections each one reproduces
   (label equal, box and score within tolerance).
4. The three performance tiers (inference.py --perf_only) for each GPU backend at --batchsize,
   with the model's 45.1 GFLOP/image (672x672) turned into achieved TFLOP/s.
Prints tables and writes --json. Needs a CUDA GPU; TensorRT is optional.
"""

import argparse
import contextlib
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from centernet import onnx_export as ox  # noqa: E402
from centernet.compare import match_rate  # noqa: E402
from centernet.config import load_spec  # noqa: E402
from centernet.dataset import FolderImageSet  # noqa: E402
from centernet.fileio import write_json  # noqa: E402
from centernet.model import build_model  # noqa: E402
from centernet.perf import (REFERENCE_SIDE, gpu_clocks, model_gflops, time_engine,  # noqa: E402
                           time_engine_io)
from centernet.pipeline import Detector, detect_records  # noqa: E402
from centernet.report import environment, format_table  # noqa: E402
from centernet.synthetic import COCO_LIKE_SIZES, scene, seeded_state_dict  # noqa: E402
from coco_labels import COCO_CLASSES  # noqa: E402

CONFIG = ROOT / 'centernet_r18_8xb16-crop512-140e_coco.py'
# (box px, score) tolerances for "the same detection"
STRICT = (0.05, 1e-4)     # FP32 on another device: summation order only
FP16 = (1.0, 5e-3)        # FP16 network: ~1e-3 relative noise
# The share of the reference's detections a backend must reproduce, at the tolerance for its
# precision; below it the check fails (exit 1). FP16 on ONNX Runtime CPU reproduces 100 % at FP16
# tolerance on the golden images (tools/parity_report.py).
REQUIRED_MATCH = {'fp32': ('strict', 0.99), 'fp16': ('fp16_tolerance', 0.95)}


def make_inputs(folder, weight, images, side=REFERENCE_SIDE):
    """The checkpoint, its FP32 ONNX (the FP16 one is made when a TensorRT row needs it) and
    `images` pictures of COCO-like sizes, scaled by side / 672 (the sizes as they are at 672)."""
    import cv2
    import numpy as np
    spec = load_spec(CONFIG)
    if weight is None:
        model = build_model(spec)
        model.load_state_dict(seeded_state_dict(model, 0))
        weight = folder / 'seeded.pth'
        torch.save({'state_dict': model.state_dict()}, weight)
    from centernet.checkpoint import load_model
    model, classes = load_model(spec, weight)
    fp32 = ox.export_fp32(model, folder / 'centernet.onnx', classes=classes or COCO_CLASSES)
    pictures = folder / 'pictures'
    pictures.mkdir()
    rng = np.random.default_rng(5)
    scale = side / REFERENCE_SIDE
    for i in range(images):
        width, height = COCO_LIKE_SIZES[i % len(COCO_LIKE_SIZES)]
        cv2.imwrite(str(pictures / f'{i:04d}.jpg'),
                    scene(rng, max(1, round(width * scale)), max(1, round(height * scale)))[0])
    return weight, fp32, FolderImageSet(pictures).records


@contextlib.contextmanager
def fp32_math():
    """FP32 proper for one row, then torch's settings as they were: TF32 off for cuDNN
    convolutions and matmuls, as the fp32 TensorRT engine is built without TF32
    (engine.build.EngineBuilder), so that every FP32 row is measured alike and against the
    same strict tolerance; the FP16 rows keep torch's defaults."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def backend_factories(weight, fp32_onnx, folder, cpu_smoke=False):
    """(name, precision, opener) per backend to check, TensorRT last: it makes its own stream
    current."""
    from centernet.backends.torch_backend import TorchBackend
    if cpu_smoke:  # the script's plumbing on a machine without a GPU (tests/test_tools.py)
        return [('torch-cpu-fp32', 'fp32', lambda: TorchBackend(CONFIG, weight, device='cpu'))]

    def torch_fp32():
        return TorchBackend(CONFIG, weight, device='cuda', precision='fp32', cuda_graph=False)

    def torch_fp16():
        return TorchBackend(CONFIG, weight, device='cuda', precision='fp16', cuda_graph=True)

    def torch_fp16_compiled():
        return TorchBackend(CONFIG, weight, device='cuda', precision='fp16', cuda_graph=True,
                            compile_mode='default')

    from centernet.engine.api import runtime_for_this_gpu
    runtime, why = runtime_for_this_gpu()

    def tensorrt(precision):
        def open_engine():
            from centernet.backends import open_backend
            from centernet.engine.build import build_engine
            from centernet.engine.profile import Profile
            engine = folder / f'centernet_{precision}.engine'
            onnx = fp32_onnx if precision == 'fp32' else ox.convert_fp16(
                fp32_onnx, ox.fp16_sibling(fp32_onnx))
            start = time.perf_counter()
            # The build self-checks the engine against ONNX Runtime CPU on the FP32 ONNX.
            build_engine(onnx, engine, precision, Profile(), reference_onnx=fp32_onnx,
                         runtime=runtime, compute_capability='current'
                         if runtime == 'tensorrt-rtx' else None)
            print(f'{runtime} {precision} engine built in {time.perf_counter() - start:.1f} s')
            return open_backend('tensorrt', engine)
        return open_engine

    factories = [('torch-cuda-fp32', 'fp32', torch_fp32),
                 ('torch-cuda-fp16', 'fp16', torch_fp16),
                 ('torch-cuda-fp16-compile', 'fp16', torch_fp16_compiled)]
    if runtime:
        print(f'TensorRT rows: {why}')
        factories += [(f'{runtime}-fp32', 'fp32', tensorrt('fp32')),
                      (f'{runtime}-fp16', 'fp16', tensorrt('fp16'))]
    else:
        print(f'TensorRT rows skipped: {why}')
    return factories


def check_backend(name, backend, reference, records, args):
    """Parity against the reference, then the three tiers; returns (parity, performance)."""
    detector = Detector(backend)
    result = detect_records(detector, records, args.batchsize, progress=False)
    strict = match_rate(reference.arrays, result.arrays, *STRICT)
    loose = match_rate(reference.arrays, result.arrays, *FP16)
    parity = dict(strict=strict, fp16_tolerance=loose, tolerances=dict(strict=STRICT, fp16=FP16))
    warmup = min(10, args.iterations)
    engine = time_engine(backend, args.batchsize, side=args.side, warmup=warmup,
                         iterations=args.iterations)
    engine_io = time_engine_io(detector, args.batchsize, side=args.side, warmup=warmup,
                               iterations=args.iterations)
    pipeline = detect_records(detector, records, args.batchsize, progress=False)
    performance = dict(engine=engine, engine_io=engine_io,
                       pipeline=dict(fps=len(records) / pipeline.seconds,
                                     loader_wait_seconds=pipeline.wait_seconds),
                       backend=backend.describe())
    return parity, performance


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--weight', help='mmdet checkpoint (default: seeded weights)')
    parser.add_argument('--images', type=int, default=96)
    parser.add_argument('--batchsize', type=int, default=32)
    parser.add_argument('--iterations', type=int, default=100)
    parser.add_argument('--side', type=int, default=REFERENCE_SIDE,
                        help='canvas side of the engine tiers (the pictures are COCO-like sizes '
                             'scaled by side / 672)')
    parser.add_argument('--json', default='results/gpu_check.json')
    parser.add_argument('--cpu-smoke', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.cpu_smoke:
        sys.exit('error: no CUDA GPU visible to torch: this check is for GPU machines '
                 '(the CPU path is covered by the test suite and tools/benchmark_cpu.py)')
    report = dict(environment=environment(), gpu_clocks=gpu_clocks(), parity={}, performance={})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weight, fp32, records = make_inputs(folder, args.weight, args.images, args.side)
        from centernet.backends.onnxruntime_backend import OrtBackend
        reference = detect_records(Detector(OrtBackend(fp32)), records, 8, progress=False)
        rows = []
        report['failures'] = {}
        for name, precision, open_backend in backend_factories(weight, fp32, folder,
                                                               args.cpu_smoke):
            math = fp32_math() if precision == 'fp32' else contextlib.nullcontext()
            try:  # one broken backend must not hide the others' numbers
                with math:
                    parity, performance = check_backend(name, open_backend(), reference,
                                                        records, args)
            except Exception as exc:  # noqa: BLE001 - reported, the check goes on
                report['failures'][name] = f'{type(exc).__name__}: {exc}'
                print(f'{name}: FAILED: {type(exc).__name__}: {exc}')
                traceback.print_exc()
                continue
            report['parity'][name], report['performance'][name] = parity, performance
            strict, loose = parity['strict'], parity['fp16_tolerance']
            kind, needed = REQUIRED_MATCH[precision]
            passed = parity[kind][0] >= needed
            if not passed:
                report['failures'][name] = (f'{parity[kind][0]:.2%} of the reference detections '
                                            f'matched at {kind} tolerance; needed {needed:.0%}')
            rows.append([name, f'{strict[0]:.2%}', f'{loose[0]:.2%}', strict[2],
                         'yes' if passed else 'NO'])
        print(format_table(['backend', f'match <= {STRICT}', f'match <= {FP16}', 'detections',
                            'ok'],
                           rows, title='detections vs ONNX Runtime CPU FP32 (label, box px, score)'))
        gflops = model_gflops(load_spec(CONFIG), args.side)
        perf_rows = []
        for name, entry in report['performance'].items():
            fps = entry['engine']['fps']
            perf_rows.append([name, fps, fps * gflops / 1e3,
                              entry['engine']['latency_ms_p50'], entry['engine_io']['fps'],
                              entry['pipeline']['fps']])
        print(format_table(['backend', 'engine FPS', 'TFLOP/s', 'p50 ms', 'engine+io FPS',
                            'pipeline FPS'], perf_rows,
                           title=f'batch {args.batchsize}, {args.side}x{args.side} (reference: '
                                 '799.7 FPS engine only at 672x672, its own GPU)'))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, report, indent=1)
    print(f'report: {args.json}')
    for name, failure in report['failures'].items():
        print(f'FAIL {name}: {failure}')
    return 1 if report['failures'] else 0


if __name__ == '__main__':
    sys.exit(main())
