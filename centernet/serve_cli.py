"""serve.py's work: open the model once to learn what it is, write a Triton model repository, and
serve it on the tritonserver that nvidia-pytriton ships (or leave the repository for a
stand-alone tritonserver: --write_repository)."""

import gc
import tempfile
from pathlib import Path

from .errors import UserError
from .serving import require

FLAG_MINIMUMS = dict(batchsize=1, instances=1, max_queue_delay_us=0)


def check_args(args):
    for flag, lowest in FLAG_MINIMUMS.items():
        if getattr(args, flag) < lowest:
            raise UserError(f'--{flag} must be at least {lowest}, got {getattr(args, flag)}')
    for flag in ('port', 'grpc_port', 'metrics_port'):
        if not 1 <= getattr(args, flag) <= 65535:
            raise UserError(f'--{flag} must be a TCP port (1-65535), got {getattr(args, flag)}')
    if len({args.port, args.grpc_port, args.metrics_port}) < 3:
        raise UserError(f'--port, --grpc_port and --metrics_port must differ, got {args.port}, '
                        f'{args.grpc_port} and {args.metrics_port}')
    if args.max_canvas is not None and args.max_canvas < 32:
        raise UserError(f'--max_canvas must be at least 32 (canvas sides are multiples of 32), '
                        f'got {args.max_canvas}')
    if args.write_repository and Path(args.write_repository).exists():
        # fileio.atomic_folder would leave an existing folder as it is
        raise UserError(f'{args.write_repository} already exists: choose a new folder, or '
                        'remove that one first')
    if args.log_file and not Path(args.log_file).resolve().parent.is_dir():
        raise UserError(f'--log_file {args.log_file}: its folder does not exist: create it or '
                        'choose another path')
    if not args.write_repository:
        if args.layout == 'ensemble' and args.network == 'native':
            raise UserError('the tritonserver in nvidia-pytriton has only the Python backend: '
                            'serve --layout ensemble with --network python, or write the '
                            'repository (--write_repository DIR) for a tritonserver with the '
                            'TensorRT / ONNX Runtime backends (docs/serving.md)')


def describe_model(args):
    """Open the backend as inference.py does (the same checks and messages), keep what the
    repository needs, and close it again: the model instances open their own. A TensorRT engine
    for --write_repository is read from its sidecar instead: the repository is for a server on
    another machine, and this one need not have a GPU or TensorRT."""
    from .backends import open_backend, resolve_backend_name
    from .demo import max_canvas_for
    from .inference_cli import NO_MODEL
    from .serving.repository import ServedModel
    if not args.engine and not args.weight:
        raise UserError(NO_MODEL)
    options = dict(device=args.device, precision=args.precision, cuda_graph=args.cuda_graph,
                   threads=args.threads, compile_mode=args.compile)
    name = resolve_backend_name(args.backend, args.engine or args.weight)
    if args.write_repository and name == 'tensorrt':
        backend = sidecar_engine(args.engine)
    else:
        backend = open_backend(args.backend, args.engine, cfg=args.cfg, weight=args.weight,
                               **options)
    try:
        check_servable(backend, args.batchsize, args.engine or args.weight)
        served = ServedModel(
            backend=backend.name, model_file=Path(args.engine or args.weight),
            cfg_file=Path(args.cfg) if backend.name == 'torch' else None, options=options,
            spec=backend.spec, classes=tuple(backend.classes),
            max_canvas=tuple(max_canvas_for(backend, args.max_canvas)),
            gpu=backend.device.type == 'cuda', describe=backend.describe(),
            extra_files=pending_reference(backend))
    finally:
        backend.close()
        on_gpu = backend.device.type == 'cuda'
        del backend
        gc.collect()
        if on_gpu:
            import torch
            torch.cuda.empty_cache()
    return served


def sidecar_engine(engine):
    """The engine from its sidecar, refused as open_backend refuses one that failed its
    self-check."""
    from .backends.tensorrt_backend import SidecarEngine
    from .engine.check import failed_check_error
    backend = SidecarEngine(engine)
    failed = failed_check_error(backend.engine_path, backend.record, command='serve.py')
    if failed is not None:
        raise failed
    return backend


def pending_reference(backend):
    """The ONNX a TensorRT engine with a pending self-check is checked against at its first load:
    a written repository carries it beside the engine, where the check looks on another machine
    (engine.check.reference_beside); () for every other model."""
    record = getattr(backend, 'record', None) or {}
    check = record.get('self_check') or {}
    if check.get('status') != 'pending':
        return ()
    from .engine.check import reference_beside
    reference = reference_beside(backend.engine_path, check)
    if reference is None:
        name = Path(check.get('reference_onnx', 'model.onnx')).name
        raise UserError(f'{backend.engine_path} has a pending self-check (it runs at the engine\'s '
                        f'first load on a GPU, against {name}), but {name} is neither where the '
                        f'build left it nor beside the engine: copy it beside the engine, into '
                        f'{backend.engine_path.parent}, so that the repository carries it')
    return (reference,)


def check_servable(backend, batchsize, model):
    """Each request is one image, and each dynamic batch runs as groups of one canvas size: the
    model must take the largest batch, batches of one, and more than one canvas size."""
    backend.check_batch(batchsize)
    try:
        backend.check_batch(1)
    except UserError as exc:
        raise UserError(f'serve.py runs batches of as few as one image (a request is one image, '
                        f'and a dynamic batch runs grouped by canvas size): {exc}') from None
    limits = getattr(backend, 'limits', None)
    single = getattr(backend, 'static_hw', None) or (
        limits and (limits.min_height, limits.min_width) == (limits.max_height, limits.max_width)
        and (limits.max_height, limits.max_width))
    if single:
        raise UserError(f'{model} takes one canvas size only ({single[0]}x{single[1]}), and a '
                        'server gets images of every size: serve a model for a range of sizes '
                        '(export.py without --static; build_engine.py with --min_side below '
                        '--max_side)')


def run(args):
    from .serving.repository import Batching, native_platform, write_repository
    check_args(args)
    require('tritonclient.grpc.model_config_pb2', 'serve.py')
    if not args.write_repository:
        require('pytriton', 'serve.py')
        endpoints(args).check_free()  # before the model takes its seconds to open
    served = describe_model(args)
    batching = Batching(args.batchsize, args.instances, args.max_queue_delay_us)
    layout = args.layout or ('ensemble' if args.write_repository else 'python')
    network = args.network or ('native' if args.write_repository and native_platform(served)
                               else 'python')
    if args.write_repository:
        from .fileio import atomic_folder
        with atomic_folder(args.write_repository) as folder:
            write_repository(folder, served, batching, layout, network)
        models = sorted(p.name for p in Path(args.write_repository).iterdir())
        if layout == 'python':
            step = ''
        elif network == 'native':
            step = f'; the network step is Triton\'s {native_platform(served)[0]}'
        else:
            step = (f'; the network step is the kit\'s {served.backend} backend in Triton\'s '
                    'Python backend')
        print(f'wrote the Triton model repository {args.write_repository} ({layout} layout: '
              f'{", ".join(models)}{step}); serve it with tritonserver --model-repository '
              f'{Path(args.write_repository).resolve()} (docs/serving.md, "Native Triton")')
        return 0
    with tempfile.TemporaryDirectory(prefix='centernet-serve-') as scratch:
        repository = Path(scratch) / 'models'
        repository.mkdir()
        write_repository(repository, served, batching, layout, network, link=True)
        return serve(args, served, batching, repository, Path(scratch))


def endpoints(args):
    from .serving.server import Endpoints
    return Endpoints(args.host, args.port, args.grpc_port, args.metrics_port)


def serve(args, served, batching, repository, scratch):
    from .serving.server import BundledServer, model_url
    where = endpoints(args)
    log_file = Path(args.log_file) if args.log_file else scratch / 'tritonserver.log'
    advice = (f'Triton\'s log: {log_file}' if args.log_file else
              'serve.py --log_file FILE keeps Triton\'s whole log')
    server = BundledServer(repository, scratch / 'pytriton', where, log_file, advice)
    print(f'starting Triton: {served.backend} ({served.describe.get("precision", "")}) on '
          f'{"GPU" if served.gpu else "CPU"}, {batching.instances} instance(s), dynamic batches '
          f'of up to {batching.max_batch} images (queue delay {batching.max_queue_delay_us} us), '
          f'canvases up to {served.max_canvas[1]}x{served.max_canvas[0]}', flush=True)
    server.start()
    try:
        print(f'  HTTP     {model_url(where)}/infer  (listening on {where.host}:'
              f'{where.http_port})\n'
              f'  gRPC     {where.host}:{where.grpc_port}\n'
              f'  metrics  http://{where.local_host}:{where.metrics_port}/metrics\n'
              f'  the statistics, model-repository, shared-memory, trace and logging endpoints '
              f'take the header triton-access-token: {server.access_token}\n'
              f'  model repository {repository} (removed when the server stops; '
              f'--write_repository DIR keeps one)\n'
              f'  {advice}\n'
              'ready: Ctrl-C or SIGTERM stops the server', flush=True)
        server.wait()
    except KeyboardInterrupt as exc:
        # The stop is this command's normal end (exit 0). run_main raises a SIGTERM or Ctrl-C
        # again every 0.5 s until it returns (a stop a library swallowed must not be lost), and
        # one landing in the shutdown below would cut it short and end the run in an error:
        # accepting the stop ends that (common.Stopped.accept).
        accept = getattr(exc, 'accept', None)
        if accept is not None:
            accept()
        how = getattr(exc, 'signal_name', 'Ctrl-C (SIGINT)')
        print(f'stopping: {how} received', flush=True)
    finally:
        server.stop()
    print('server stopped', flush=True)
    return 0
