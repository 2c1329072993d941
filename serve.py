#!/usr/bin/env python3
"""Serve CenterNet-R18 through NVIDIA Triton Inference Server (HTTP, gRPC, dynamic batching).

    serve        python3 serve.py --engine centernet.engine [--port 8000] [--batchsize 32]
    repository   python3 serve.py --engine centernet.engine --write_repository models/
                 (for a stand-alone tritonserver: the engine as tensorrt_plan, an ensemble)

Model `centernet` takes encoded images (JPEG/PNG bytes, one per request) and answers each with
its 100 best detections: boxes (xyxy, original-image pixels), scores, labels, COCO category ids
and class names. The backend follows --engine's suffix as in inference.py (TensorRT, ONNX
Runtime, an mmdet checkpoint on PyTorch). Needs `pip install -r requirements-serve.txt`; the
server is the tritonserver that nvidia-pytriton ships. docs/serving.md: queries (curl, Python),
instances, replicas, native Triton.
"""

from common import ArgumentParser, add_model_arguments, run_main


def parse_args(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0],
                            epilog='\n'.join(__doc__.splitlines()[2:]))
    add_model_arguments(parser, 'model (as inference.py)', cuda_graph_help=(
        'torch backend on CUDA: replay one CUDA graph per canvas shape'))

    serving = parser.add_argument_group('serving')
    serving.add_argument('--host', default='0.0.0.0',
                         help='address the HTTP and gRPC endpoints listen on (127.0.0.1: this '
                              'machine only)')
    serving.add_argument('--port', type=int, default=8000, help='HTTP port')
    serving.add_argument('--grpc_port', type=int, default=8001, help='gRPC port')
    serving.add_argument('--metrics_port', type=int, default=8002,
                         help='Prometheus metrics port (/metrics)')
    serving.add_argument('--batchsize', type=int, default=32,
                         help='the largest dynamic batch (Triton\'s max_batch_size); each batch '
                              'runs as canvas-shape groups, so detections do not depend on it')
    serving.add_argument('--instances', type=int, default=1,
                         help='model instances (processes) per server, each with its own '
                              'backend: Triton\'s instance_group count')
    serving.add_argument('--max_queue_delay_us', type=int, default=2000,
                         help='how long Triton may hold a request to fill a batch, in '
                              'microseconds')
    serving.add_argument('--max_canvas', type=int, metavar='SIDE',
                         help='refuse images whose canvas would be larger than SIDE x SIDE '
                              '(default: the model\'s own limit, 1344 for a dynamic ONNX or the '
                              'torch model)')
    serving.add_argument('--log_file', help='Triton\'s log (default: a temporary file, removed '
                                            'when the server stops)')

    repository = parser.add_argument_group('model repository')
    repository.add_argument('--write_repository', metavar='DIR',
                            help='write a Triton model repository to the new folder DIR and exit, '
                                 'instead of serving (for a stand-alone tritonserver)')
    repository.add_argument('--layout', choices=('python', 'ensemble'),
                            help='python: the kit\'s Python-backend model, any backend (default '
                                 'when serving); ensemble: preprocess -> network -> decode steps '
                                 '(default with --write_repository)')
    repository.add_argument('--network', choices=('native', 'python'),
                            help='the ensemble\'s network step: native = Triton\'s tensorrt_plan '
                                 '/ onnxruntime_onnx backend (default with --write_repository); '
                                 'python = the kit\'s backend in the Python backend (default when '
                                 'serving: the bundled tritonserver has only that one)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from centernet.serve_cli import run
    return run(args)


if __name__ == '__main__':
    run_main(main)
