#!/usr/bin/env python3
"""Export CenterNet-R18 from an mmdet checkpoint to ONNX (FP32, mixed-precision FP16 or INT8 Q/DQ).

    python3 export.py --weight centernet_resnet18_140e_coco_20210705_093630-bb5b3bf7.pth \\
        --cfg centernet_r18_8xb16-crop512-140e_coco.py --output centernet.onnx [--precision fp16]

The graph takes a (B, H, W, 3) uint8 BGR canvas and returns heatmap, wh, offset (docs/export.md,
"The ONNX model"). Each graph is first written beside its path and judged by the precision gate
(its detections and heads on ONNX Runtime vs PyTorch FP32, docs/precision-gate.md); only a graph
that passed reaches its path. A refused one is kept as NAME.rejected.onnx, and the script exits 2.
OUTPUT's .export.json records each verdict and the checkpoint's and config's sha256.
"""

from common import DEFAULT_CONFIG, ArgumentParser, parse_shape, run_main


def parse_args(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--weight', required=True, help='mmdet checkpoint (.pth)')
    parser.add_argument('--cfg', default=DEFAULT_CONFIG, help='mmdet config file')
    parser.add_argument('--output', default='centernet.onnx', help='ONNX file to write')
    parser.add_argument('--precision', choices=('fp32', 'fp16', 'both', 'int8'), default='fp32',
                        help='fp16 writes a mixed-precision graph for strongly typed TensorRT '
                             'builds; both writes OUTPUT and OUTPUT with a _fp16 suffix; int8 a '
                             'Q/DQ graph calibrated on --calib (docs/int8.md)')
    parser.add_argument('--calib', metavar='DIR',
                        help='int8: calibration images, a COCO-layout folder (as --datasets) or a '
                             'folder of images')
    parser.add_argument('--calib_images', type=int, default=128,
                        help='int8: calibrate on the first N images (default 128)')
    parser.add_argument('--calib_method', choices=('minmax', 'entropy', 'percentile'),
                        default='minmax',
                        help='int8: activation range calibration (default minmax)')
    parser.add_argument('--int8_flavour', choices=('tensorrt', 'cpu'), default='tensorrt',
                        help='int8: tensorrt = symmetric int8 activations (TensorRT\'s only mode, '
                             'default); cpu = uint8 asymmetric activations, the fast form for '
                             'ONNX Runtime on x86 CPUs (TensorRT refuses it)')
    parser.add_argument('--static', type=parse_shape, metavar='BxHxW',
                        help='fixed input shape instead of dynamic batch/height/width')
    parser.add_argument('--end2end', action='store_true',
                        help='decode inside the graph: inputs canvas + borders, outputs boxes, '
                             'scores, labels (100 per image), for serving stacks; inference.py '
                             'takes the default heads graph, build_engine.py builds either')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (default 17)')
    parser.add_argument('--no-simplify', dest='simplify', action='store_false',
                        help='skip onnxsim')
    parser.add_argument('--skip-check', dest='check', action='store_false',
                        help='write the graphs without the precision gate (recorded as skipped)')
    parser.add_argument('--if-stale', '--if_stale', dest='if_stale', action='store_true',
                        help='export only when OUTPUT (and its _fp16 sibling) is missing, did not '
                             'pass the gate, or was made from another checkpoint or config, per '
                             'its .export.json; say why')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from centernet.export_cli import run_cli
    return run_cli(args)


if __name__ == '__main__':
    run_main(main)
