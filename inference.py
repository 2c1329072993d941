#!/usr/bin/env python3
"""CenterNet-R18 inference: COCO accuracy, performance, or annotated pictures.

    accuracy     python3 inference.py --engine centernet.engine --batchsize 32 --datasets D
                 python3 inference.py --server localhost:8000 --datasets D   (through serve.py)
    performance  python3 inference.py --engine centernet.engine --batchsize 32 --perf_only
    pictures     python3 inference.py --engine centernet.onnx --images photo.jpg --out out/

The backend follows --engine's suffix: .engine/.plan/.trt -> TensorRT, .onnx -> ONNX Runtime,
.pth/.pt (an mmdet checkpoint) -> the PyTorch model built from --cfg. --weight CHECKPOINT is the
same as --engine CHECKPOINT.pth. Flags follow the reference project's (--engine --batchsize
--datasets --input_name --warmup --acc_target --fps_target --perf_only; its `--perf_only True`
spelling works too).
"""

import argparse
import os

from common import ArgumentParser, add_model_arguments, run_main
from centernet.evaluate import DEFAULT_EVALUATOR, EVALUATORS


def parse_args(argv):
    parser = ArgumentParser(prog='inference.py', description=__doc__.splitlines()[0],
                            epilog='\n'.join(__doc__.splitlines()[2:]))
    model = add_model_arguments(parser, cuda_graph_help=(
        'torch backend on CUDA: replay one CUDA graph per input shape (for --perf_only; a COCO '
        'run has hundreds of shapes)'))
    model.add_argument('--input_name', help='checked against the model\'s input name (canvas)')

    data = parser.add_argument_group('data')
    data.add_argument('--datasets', default=os.environ.get('DATASETS_DIR'),
                      help='COCO folder: annotations/instances_val2017.json + images/val2017/ '
                           '(default: $DATASETS_DIR)')
    data.add_argument('--batchsize', type=int,
                      help='images per batch (default: 32 when the model runs on a GPU, 4 on the '
                           'CPU, where larger batches only take more memory)')
    data.add_argument('--workers', type=int,
                      help='image-decoding threads (default: one per core, at most 8; 0: decode '
                           'in the main thread)')
    data.add_argument('--limit', type=int, help='only the first N images (accuracy: smoke runs; '
                      'performance: the pipeline tier, default 1000)')
    data.add_argument('--skip_bad_images', action='store_true',
                      help='count unreadable images (and refused ones: --max_pixels, memory) as '
                           'having no detections, list them at the end and go on')
    data.add_argument('--max_pixels', type=float, default=250e6, metavar='N',
                      help='refuse pictures larger than N pixels before decoding them (default '
                           '250e6: a 200 MP phone photo passes, COCO\'s largest is 0.4 MP); a '
                           'picture whose memory estimate exceeds the memory available is '
                           'refused too')

    out = parser.add_argument_group('results')
    out.add_argument('--save_json', help='write all detections in COCO results format')
    out.add_argument('--evaluator', choices=EVALUATORS, default=DEFAULT_EVALUATOR,
                     help='COCO evaluation: faster-coco-eval (default) or pycocotools (reference)')
    out.add_argument('--record', help='run record JSON (default '
                     'results/<mode>_<backend>_<precision>_bs<B>.json)')
    out.add_argument('--acc_target', type=float, help='exit 1 when AP@[.5:.95] is below this')
    out.add_argument('--fps_target', type=float,
                     help='exit 1 when the engine-only FPS is below this')

    perf = parser.add_argument_group('performance')
    perf.add_argument('--perf_only', action='store_true',
                      help='time the engine instead of evaluating accuracy')
    perf.add_argument('--warmup_seconds', type=float, default=2.0,
                      help='untimed runs first, for about this long (at least one)')
    perf.add_argument('--seconds', type=float, default=10.0,
                      help='time each tier for about this long (at least 3 runs)')
    perf.add_argument('--warmup', type=int,
                      help='untimed iterations first: a count instead of --warmup_seconds')
    perf.add_argument('--iterations', type=int,
                      help='timed iterations per tier: a count instead of --seconds')

    server = parser.add_argument_group('accuracy through a server')
    server.add_argument('--server', metavar='HOST:PORT',
                        help='detect through the Triton server at HOST:PORT (its HTTP endpoint, '
                             'from serve.py) instead of a local --engine: the accuracy mode as a '
                             'client (needs requirements-serve.txt)')
    server.add_argument('--concurrency', type=int,
                        help='--server: requests in flight (default: the server\'s largest '
                             'batch)')

    demo = parser.add_argument_group('pictures')
    demo.add_argument('--images', help='an image file or folder: draw detections into --out')
    demo.add_argument('--out', default='detections', help='folder for annotated pictures')
    demo.add_argument('--score_thr', type=float, default=0.3,
                      help='draw boxes above this score (drawing only; JSON keeps all 100)')
    demo.add_argument('--max_boxes', type=int, default=20,
                      help='draw at most this many boxes per picture, the best ones, so that '
                           'their captions leave the picture visible (JSON keeps all 100)')
    demo.add_argument('--max_canvas', type=int, metavar='SIDE',
                      help='shrink a picture whose canvas would have a side above SIDE before '
                           'detection (boxes are mapped back to the original pixels; default: '
                           'the largest canvas the model takes, 1344 for a dynamic ONNX or the '
                           'torch model)')
    demo.add_argument('--max_side', type=int, help=argparse.SUPPRESS)  # says: use --max_canvas
    parser.add_argument('--quiet', action='store_true',
                        help='no progress bars and no run-time estimate')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from centernet.inference_cli import run
    return run(args)


if __name__ == '__main__':
    run_main(main)
