#!/usr/bin/env python3
"""Build a TensorRT engine (strongly typed: FP16, FP32 or INT8 Q/DQ) from a CenterNet ONNX made by export.py.

    python3 build_engine.py --model centernet.onnx --engine centernet_fp16.engine --precision fp16
    python3 build_engine.py --model centernet_fp16.onnx --engine centernet_fp16.engine \
        --runtime tensorrt-rtx            # TensorRT for RTX: no GPU needed to build

FP16 builds the mixed-precision FP16 ONNX (made next to the FP32 one when given that); there is no
FP16 builder flag, on TensorRT 10, 11 or TensorRT for RTX. The new engine is then self-checked
against ONNX Runtime CPU on the FP32 ONNX (an INT8 engine: on its own Q/DQ ONNX;
centernet.engine.check); one that fails is not installed (exit 2). A TensorRT for RTX engine built
without a GPU is written with its self-check pending: the check runs at its first load on a GPU.
Next to the engine goes `<engine>.json`: runtime and version, GPU, targets, precision, profile,
ONNX sha256 and the self-check's result, which --if-stale compares to rebuild only when one of
them changed (or the check did not pass), and the model spec the TensorRT backend reads. An
--end2end ONNX builds too (for a serving stack; inference.py runs the heads engine).
"""

import dataclasses

from common import ArgumentParser, run_main


def parse_args(argv):
    from centernet.engine.api import RUNTIMES
    from centernet.engine.profile import Profile  # its defaults are the flags' defaults
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', required=True, help='ONNX from export.py (FP32, FP16 or INT8)')
    parser.add_argument('--engine', required=True, help='engine file to write (.engine / .plan)')
    parser.add_argument('--precision', choices=('fp16', 'fp32', 'int8'), default='fp16',
                        help='fp16 builds the mixed-precision FP16 ONNX (made from an FP32 one '
                             'when needed); fp32 needs the FP32 ONNX; int8 the Q/DQ ONNX '
                             '(export.py --precision int8) (default fp16)')
    parser.add_argument('--runtime', choices=RUNTIMES, default='auto',
                        help='tensorrt (TensorRT 10/11, builds on and for this GPU), tensorrt-rtx '
                             '(TensorRT for RTX: builds without a GPU, for RTX-class GPUs), or '
                             'auto: tensorrt when it imports, else tensorrt-rtx (default auto)')
    parser.add_argument('--compute_capability', metavar='TARGETS',
                        help='TensorRT for RTX only: the GPUs the engine runs on: portable (the '
                             'library\'s default set, 8.0 and later), current (this GPU only; '
                             'needs one) or a comma list such as 8.6,8.9 (default portable)')
    profile = parser.add_argument_group('optimisation profile: the canvas shapes the engine '
                                        'accepts, (B, H, W, 3); H and W share the side range')
    for field in dataclasses.fields(Profile):
        profile.add_argument(f'--{field.name}', type=int, default=field.default,
                             help=f'default {field.default}' + (' (multiple of 32)'
                                                                if 'side' in field.name else ''))
    parser.add_argument('--workspace', type=float, default=4.0,
                        help='TensorRT workspace memory pool limit in GiB (default 4)')
    parser.add_argument('--timing_cache', metavar='PATH',
                        help='TensorRT only: kernel timing cache, reused across builds and saved '
                             'back after each (default: tensorrt_timing.cache next to the engine)')
    check = parser.add_argument_group('self-check: after the build, the engine is run on check '
                                      'scenes (the profile\'s extremes included) and judged '
                                      'against ONNX Runtime CPU on the FP32 ONNX (INT8: on the '
                                      'Q/DQ ONNX it is built from) by the precision gate; a '
                                      'failing engine is kept as <name>.rejected<suffix>')
    check.add_argument('--reference_onnx', metavar='FP32.onnx',
                       help='the FP32 ONNX to check against (default: --model when it is the '
                            'FP32 one, else the FP32 ONNX beside it: centernet_fp16.onnx -> '
                            'centernet.onnx; not for INT8)')
    check.add_argument('--skip-check', '--skip_check', dest='skip_check', action='store_true',
                       help='no self-check (the sidecar says "skipped"; --if-stale then accepts '
                            'an engine without a passed check)')
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--force', action='store_true', help='rebuild even if the engine exists')
    mode.add_argument('--if-stale', '--if_stale', dest='if_stale', action='store_true',
                      help='build only when the engine is missing or stale (other runtime, '
                           'version, GPU or targets, precision, profile or ONNX, or no passed or '
                           'pending self-check), and say why')
    mode.add_argument('--check', action='store_true',
                      help='only say whether the engine is current; exit 0 if so, 1 if stale')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from centernet.engine.build import run_cli
    return run_cli(args)


if __name__ == '__main__':
    run_main(main)
