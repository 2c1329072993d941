#!/usr/bin/env python3
"""CenterNet-R18 inference: COCO accuracy, performance, or annotated pictures.

    accuracy     python3 inference.py --engine centernet.engine --batchsize 32 --datasets D
    performance  python3 inference.py --engine centernet.engine --batchsize 32 --perf_only
    pictures     python3 inference.py --engine centernet.onnx --images photo.jpg --out out/

--engine takes a TensorRT engine (.engine/.plan), an ONNX file (ONNX Runtime) or, with
--backend torch, nothing: --weight CHECKPOINT --cfg CONFIG. Flags follow the reference project's
(--engine --batchsize --datasets --input_name --warmup --acc_target --fps_target --perf_only).
"""

import argparse
import os

from common import DEFAULT_CONFIG, add_bool_flag, run_main


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='\n'.join(__doc__.splitlines()[2:]))
    model = parser.add_argument_group('model')
    model.add_argument('--engine', help='.engine/.plan (TensorRT) or .onnx (ONNX Runtime)')
    model.add_argument('--backend', default='auto',
                       choices=('auto', 'tensorrt', 'onnxruntime', 'torch'),
                       help='auto: from --engine\'s suffix (default)')
    model.add_argument('--weight', help='checkpoint, for --backend torch')
    model.add_argument('--cfg', default=DEFAULT_CONFIG, help='mmdet config, for --backend torch')
    model.add_argument('--device', help='torch backend device: cuda (default if present) or cpu')
    model.add_argument('--precision', choices=('fp16', 'fp32', 'int8'),
                       help='torch backend: fp16 on CUDA (default), fp32 on CPU; int8 is refused '
                            '(INT8 runs as a Q/DQ ONNX: export.py --precision int8)')
    model.add_argument('--input_name', help='checked against the model\'s input name (canvas)')
    model.add_argument('--threads', type=int, default=0, help='ONNX Runtime intra-op threads')
    add_bool_flag(model, '--cuda_graph', 'torch backend on CUDA: replay one CUDA graph per input '
                  'shape (for --perf_only; a COCO run has hundreds of shapes)')
    model.add_argument('--compile', metavar='MODE',
                       help='torch backend: torch.compile the network with MODE, "default" or '
                            '"max-autotune-no-cudagraphs" (default: off); "default" gives 1.9x '
                            'the FPS on an H200 after a compile of ~15 s')

    data = parser.add_argument_group('data')
    data.add_argument('--datasets', default=os.environ.get('DATASETS_DIR'),
                      help='COCO folder: annotations/instances_val2017.json + images/val2017/ '
                           '(default: $DATASETS_DIR)')
    data.add_argument('--batchsize', type=int, default=32)
    data.add_argument('--workers', type=int,
                      help='image-decoding threads (default: one per core, at most 8; 0: decode '
                           'in the main thread)')
    data.add_argument('--limit', type=int, help='only the first N images (accuracy: smoke runs; '
                      'performance: the pipeline tier, default 1000)')
    add_bool_flag(data, '--skip_bad_images', 'count unreadable images as having no detections')

    out = parser.add_argument_group('results')
    out.add_argument('--save_json', help='write all detections in COCO results format')
    out.add_argument('--record', help='run record JSON (default results/<mode>_<backend>_bs<B>.json)')
    out.add_argument('--acc_target', type=float, help='exit 1 when AP@[.5:.95] is below this')
    out.add_argument('--fps_target', type=float,
                     help='exit 1 when the engine-only FPS is below this')

    perf = parser.add_argument_group('performance')
    add_bool_flag(perf, '--perf_only', 'time the engine instead of evaluating accuracy')
    perf.add_argument('--warmup', type=int, default=10, help='untimed iterations first')
    perf.add_argument('--iterations', type=int, default=50, help='timed iterations per tier')

    demo = parser.add_argument_group('pictures')
    demo.add_argument('--images', help='an image file or folder: draw detections into --out')
    demo.add_argument('--out', default='detections', help='folder for annotated pictures')
    demo.add_argument('--score_thr', type=float, default=0.3,
                      help='draw boxes above this score (drawing only; JSON keeps all 100)')
    add_bool_flag(parser, '--quiet', 'no progress bars')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from centernet.inference_cli import run
    return run(args)


if __name__ == '__main__':
    run_main(main)
