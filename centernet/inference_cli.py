"""inference.py's work: open the backend, then accuracy, performance or pictures."""

import dataclasses
from pathlib import Path

import numpy as np

from .backends import open_backend, resolve_backend_name
from .errors import UserError, option_name
from .fileio import write_json
from .pipeline import Detector, detect_records
from .preprocess import PixelLimit
from .report import environment, format_table, printable


PERF_PIPELINE_IMAGES = 1000  # the pipeline tier's largest sample without --limit
# --batchsize without a value: a GPU wants large batches; on 2 CPU cores a batch of 32 672x672
# canvases takes about 13 s and 1.6 GB of activations (108 B per pixel), so the CPU default is
# the scripts' 4.
GPU_BATCH, CPU_BATCH = 32, 4
AP_DECIMALS = 4  # the AP is printed, and compared with --acc_target, at this precision
NO_MODEL = ('no model given: pass --engine MODEL, where MODEL is an ONNX file from export.py '
            '(ONNX Runtime), an engine from build_engine.py (TensorRT) or an mmdet checkpoint '
            '.pth (PyTorch, with --cfg)')


def run(args):
    if args.server:
        return run_accuracy(server_detection(args), args)
    if not args.engine and not args.weight:
        raise UserError(NO_MODEL)
    if args.max_side is not None:
        raise UserError('inference.py has no --max_side (that is build_engine.py\'s profile '
                        'limit): the pictures\' limit is --max_canvas')
    if args.batchsize is not None and args.batchsize < 1:
        raise UserError(f'--batchsize must be at least 1, got {args.batchsize}')
    if args.max_pixels < 1:
        raise UserError(f'--max_pixels must be at least 1, got {args.max_pixels:g}')
    if args.workers is not None and args.workers < 0:
        raise UserError(f'--workers must be 0 (decode in the main thread) or more, got '
                        f'{args.workers}')
    if args.compile:
        name = resolve_backend_name(args.backend, args.engine or args.weight)
        if name != 'torch':
            raise UserError(f'--compile is for the torch backend (--backend torch --weight '
                            f'CKPT); the {name} backend compiles its model itself')
    backend = open_backend(args.backend, args.engine, cfg=args.cfg, weight=args.weight,
                           device=args.device, precision=args.precision,
                           cuda_graph=args.cuda_graph, threads=args.threads,
                           compile_mode=args.compile)
    if args.input_name and args.input_name != backend.input_name:
        raise UserError(f'--input_name {args.input_name!r}: the model\'s input is called '
                        f'{backend.input_name!r} (a uint8 BGR canvas); drop the flag or fix it')
    if args.batchsize is None:
        args.batchsize = GPU_BATCH if backend.device.type == 'cuda' else CPU_BATCH
    backend.check_batch(args.batchsize)
    detector = Detector(backend)
    if args.images:
        from .demo import run_demo
        return run_demo(detector, args, image_limit(args, backend, full_size=False))
    if args.perf_only:
        return run_performance(detector, args)
    return run_accuracy(LocalDetection(detector, args), args)


def image_limit(args, backend, full_size):
    """The preprocess.PixelLimit for this run's pictures: --max_pixels, and the memory they
    need: at full size (COCO) the backend's network too, for each image of a batch (the loader
    counts the batch: dataset.ImageReader); in the demo the picture is shrunk before the
    network, so its drawing is what follows the decode, for as many pictures as there are
    decoding threads, and a side JPEG cannot hold is refused before detection."""
    if full_size:
        return PixelLimit(int(args.max_pixels), after_decode=backend.host_bytes_per_pixel,
                          task=f'decode and run at full size on {backend.name}',
                          raise_with='--max_pixels',
                          fewer_with=option_name('--batchsize', 'BATCHSIZE'))
    from .dataset import default_workers
    from .demo import DRAWING_BYTES_PER_PIXEL, JPEG_MAX_SIDE
    threads = default_workers() if args.workers is None else args.workers
    return PixelLimit(int(args.max_pixels), after_decode=DRAWING_BYTES_PER_PIXEL,
                      task='decode and draw', raise_with='--max_pixels',
                      copies=max(threads, 1), copies_why=f'one per decoding thread, --workers '
                                                         f'{threads}', fewer_with='--workers',
                      max_side=JPEG_MAX_SIDE, max_side_why='more than a JPEG can hold, and the '
                                                           'demo writes its pictures as JPEG')


class LocalDetection:
    """The accuracy mode's detection step on this machine: the loader, the backend and decode
    (pipeline.detect_records). ServerDetection is the same step through a server."""

    def __init__(self, detector, args):
        self.detector, self.args = detector, args
        self.backend = detector.backend
        self.name, self.classes, self.batchsize = self.backend.name, self.backend.classes, \
            args.batchsize

    @property
    def precision(self):
        return self.backend.describe().get('precision')

    def summary(self):
        return f'backend {self.name} ({self.precision or ""}), batch {self.batchsize}'

    def describe(self):
        return self.backend.describe()

    def __call__(self, records, timer):
        args = self.args
        return detect_records(self.detector, records, args.batchsize, workers=args.workers,
                              skip_bad_images=args.skip_bad_images, progress=not args.quiet,
                              estimate=not args.quiet, timer=timer,
                              limit=image_limit(args, self.backend, full_size=True))


class ServerDetection:
    """The accuracy mode's detection step through a Triton server (serving.client)."""

    def __init__(self, served, args):
        self.served, self.args = served, args
        self.concurrency = args.concurrency or max(served.max_batch, 1)
        self.name, self.classes, self.batchsize = 'server', served.classes, served.max_batch

    @property
    def precision(self):
        return self.served.served.get('precision')

    def summary(self):
        backend = self.served.served
        return (f'server {self.served.address} ({backend.get("backend", "?")} '
                f'{backend.get("precision") or ""}, batches of up to {self.batchsize}), '
                f'{self.concurrency} requests in flight')

    def describe(self):
        return dict(self.served.describe(), concurrency=self.concurrency)

    def __call__(self, records, timer):
        args = self.args
        try:
            return self.served.detect_records(records, self.concurrency,
                                              skip_bad_images=args.skip_bad_images,
                                              progress=not args.quiet,
                                              estimate=not args.quiet, timer=timer)
        finally:
            self.served.close()


def server_detection(args):
    from .serving.client import ServedDetector
    for flag, value in (('--engine', args.engine), ('--weight', args.weight),
                        ('--perf_only', args.perf_only), ('--images', args.images)):
        if value:
            raise UserError(f'--server runs the accuracy mode on the model the server serves: '
                            f'drop {flag} (serve.py --engine chooses the model; '
                            'tools/benchmark_serving.py times a server)')
    from .image_header import DEFAULT_MAX_PIXELS
    # What the server does for the client (it batches, decodes and limits the images itself):
    # the flags for that, left in the command, would change nothing.
    for flag, given, instead in (
            ('--batchsize', args.batchsize is not None, 'serve.py --batchsize sets the '
                                                         'server\'s batches'),
            ('--workers', args.workers is not None, 'the server decodes the images; '
                                                     '--concurrency sets the requests in flight'),
            ('--max_pixels', args.max_pixels != DEFAULT_MAX_PIXELS,
             'the server refuses images by its own limits: serve.py --max_canvas')):
        if given:
            raise UserError(f'--server: drop {flag}, which applies to a local run only '
                            f'({instead})')
    if args.concurrency is not None and args.concurrency < 1:
        raise UserError(f'--concurrency must be at least 1, got {args.concurrency}')
    return ServerDetection(ServedDetector(args.server), args)


def default_record(args, mode, name, precision, batchsize):
    """--record, else results/<mode>_<backend>_<precision>_bs<B>.json: an FP32 and an INT8 run on
    one backend keep their own records (the scripts pass their own --record, by run kind)."""
    return args.record or f'results/{mode}_{name}_{precision or "unknown"}_bs{batchsize}.json'


def _write_record(path, record):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record, indent=1)
    print(f'run record: {path}')


def run_accuracy(detection, args):
    """COCO accuracy of `detection` (LocalDetection or ServerDetection): the same results,
    evaluation, table and record whichever step detected."""
    from .dataset import CocoImageSet
    from .evaluate import SUMMARY_TABLE, make_evaluator, to_coco_results
    from .timing import StageTimer
    if not args.datasets:
        raise UserError('no dataset: pass --datasets DIR or set DATASETS_DIR (README, '
                        '"Quick start": scripts/prepare.sh)')
    timer = StageTimer()
    with timer.stage('annotations'):  # the file is read once; the evaluator indexes that copy
        images = CocoImageSet(args.datasets, detection.classes)
        records = images.records[:args.limit] if args.limit else images.records
        ids = np.array([r.image_id for r in records])
        evaluator = make_evaluator(args.evaluator, images.coco, images.cat_ids,
                                   img_ids=ids.tolist() if args.limit else None)
    print(f'{len(records)} images from {images.ann_file}; {detection.summary()}')
    detections = detection(records, timer)
    done = detections.done
    with timer.stage('results'):
        results = to_coco_results(ids[done], detections.boxes[done], detections.scores[done],
                                  detections.labels[done], images.cat_ids)
    if args.save_json:  # before evaluating: loadRes adds fields to the records
        with timer.stage('save_json'):
            write_json(args.save_json, results)
        print(f'detections: {args.save_json} ({len(results)} boxes)')
    with timer.stage('evaluation'):
        metrics = evaluator.evaluate(results, verbose=True)
    eval_seconds = timer.seconds['evaluation']
    timer.stop()
    shown = {key: round(value, AP_DECIMALS) for key, value in metrics.items()}
    print(format_table([name for name, _ in SUMMARY_TABLE],
                       [[shown[key] for _, key in SUMMARY_TABLE]],
                       title=f'COCO bbox ({evaluator.library}, mmdet CocoMetric settings)'))
    print(format_table(['IOU@0.5', 'IOU@0.5:0.95'], [[shown['mAP_50'], shown['mAP']]]))
    images_per_second = len(records) / detections.seconds
    print(f'{len(records)} images in {detections.seconds:.1f} s ({images_per_second:.1f} img/s '
          f'end to end; loader wait {detections.wait_seconds:.1f} s); eval {eval_seconds:.1f} s')
    print(timer.table())
    if detections.bad:
        print(f'{len(detections.bad)} unreadable image(s) counted as without detections:')
        for bad in detections.bad:
            print(f'  {printable(bad.path)}: {bad.reason}')
    record = dict(mode='accuracy', backend=detection.describe(), environment=environment(),
                  dataset=str(images.ann_file), images=len(records),
                  batchsize=detection.batchsize,
                  metrics=metrics, seconds=detections.seconds, images_per_second=images_per_second,
                  loader_wait_seconds=detections.wait_seconds, eval_seconds=eval_seconds,
                  evaluator=evaluator.library, eval_steps=evaluator.times,
                  times=timer.to_dict(),
                  canvas_shapes={f'{h}x{w}': n for (h, w), n in sorted(detections.shapes.items())},
                  bad_images=[dict(path=b.path, reason=b.reason) for b in detections.bad])
    _write_record(default_record(args, 'accuracy', detection.name, detection.precision,
                                 detection.batchsize), record)
    target = option_name(f'--acc_target {args.acc_target}', f'ACC_TARGET={args.acc_target}')
    if args.acc_target is not None and shown['mAP'] < args.acc_target:
        print(f'FAIL: AP {shown["mAP"]:.{AP_DECIMALS}f} is below {target}')
        return 1
    if args.acc_target is not None:
        print(f'PASS: AP {shown["mAP"]:.{AP_DECIMALS}f} meets {target}')
    return 0


def perf_budgets(args):
    """(warm-up, timed) Budgets: the counts --warmup/--iterations when given, else by time."""
    from .perf import TIMED_MINIMUM, Budget
    if args.iterations is not None and args.iterations < 1:
        raise UserError(f'--iterations must be at least 1, got {args.iterations}')
    if args.warmup is not None and args.warmup < 0:
        raise UserError(f'--warmup must be 0 or more, got {args.warmup}')
    if args.seconds <= 0 or args.warmup_seconds < 0:
        raise UserError('--seconds must be above 0 and --warmup_seconds 0 or more')
    warmup = (Budget(count=args.warmup) if args.warmup is not None
              else Budget(seconds=args.warmup_seconds, minimum=1))
    timed = (Budget(count=args.iterations) if args.iterations is not None
             else Budget(seconds=args.seconds, minimum=TIMED_MINIMUM))
    return warmup, timed


def run_performance(detector, args):
    from .perf import REFERENCE_SIDE, format_fps, gpu_clocks, time_engine, time_engine_io
    backend = detector.backend
    batch = args.batchsize
    warmup, timed = perf_budgets(args)
    limit = image_limit(args, backend, full_size=True)
    print(f'performance: backend {backend.name} on {backend.device}, batch {batch}; per tier '
          f'warm-up {warmup.describe()}, then timed {timed.describe()}')
    tiers = {}
    tiers['engine'] = time_engine(backend, batch, warmup=warmup, iterations=timed)
    tiers['engine+io'] = time_engine_io(detector, batch, warmup=warmup, iterations=timed)
    if args.datasets:
        from .dataset import CocoImageSet
        images = CocoImageSet(args.datasets, backend.classes)
        # About --seconds of images at the engine+io rate (at least one batch), or --limit.
        sized = max(batch, int(tiers['engine+io']['fps'] * args.seconds))
        records = images.records[:args.limit or min(PERF_PIPELINE_IMAGES, sized)]
        if backend.device.type == 'cuda' and warmup.count != 0:
            # A GPU backend keeps state per canvas shape (cuDNN plans, CUDA graphs from the
            # second sighting, torch.compile's shape-generic graph): time the steady state, as
            # the other tiers do, not the first sighting of every shape.
            detect_records(detector, records, batch, workers=args.workers, skip_bad_images=True,
                           progress=not args.quiet, description='pipeline warm-up', limit=limit)
        detections = detect_records(detector, records, batch, workers=args.workers,
                                    skip_bad_images=True, progress=not args.quiet,
                                    description='pipeline', limit=limit)
        counted = sum(detections.shapes.values())
        pixels = sum(h * w * n for (h, w), n in detections.shapes.items())
        tiers['pipeline'] = dict(batch=batch, images=len(records), iterations=detections.batches,
                                 seconds=detections.seconds,
                                 fps=len(records) / detections.seconds,
                                 loader_wait_seconds=detections.wait_seconds,
                                 canvas_pixels_mean=pixels / max(counted, 1),
                                 canvas_shapes={f'{h}x{w}': n for (h, w), n in
                                                sorted(detections.shapes.items())})
    rows = []
    side = f'{REFERENCE_SIDE}x{REFERENCE_SIDE}'
    on_gpu = backend.device.type == 'cuda'
    where = f'on the GPU ({backend.device})' if on_gpu else 'on the CPU'
    labels = {'engine': f'network alone, {side} canvases already {where}',
              'engine+io': (f'+ upload, decode, boxes to the host, {side}' if on_gpu else
                            f'network + decode, {side} (no copies on the CPU)'),
              'pipeline': 'files: decode, canvas batches by size, network, decode'}
    for name, stats in tiers.items():
        spread = (f'{format_fps(stats["fps_p10"])}-{format_fps(stats["fps_p90"])}'
                  if 'fps_p10' in stats else None)
        rows.append([labels[name], format_fps(stats['fps']), spread, stats['iterations']]
                    + [stats.get(f'latency_ms_{k}') for k in ('mean', 'p50', 'p90', 'p99')])
    print(format_table(['tier', 'FPS', 'FPS p10-p90', 'runs', 'mean ms', 'p50 ms', 'p90 ms',
                        'p99 ms'], rows,
                       title=f'batch {batch}, {backend.name} {where}; FPS = batch / mean '
                             'latency, its spread over the runs; latency per batch'))
    if 'pipeline' in tiers:
        mean = tiers['pipeline']['canvas_pixels_mean']
        print(f'The pipeline tier\'s canvases average {mean / 1e3:.0f} thousand pixels, '
              f'{mean / REFERENCE_SIDE ** 2:.0%} of {side}: each image keeps its own canvas '
              f'size (images are batched with those of the same size), so on a set of small '
              f'images it can outrun the {side} tiers.')
    record = dict(mode='performance', backend=backend.describe(), environment=environment(),
                  gpu_clocks=gpu_clocks(), batchsize=batch, warmup=dataclasses.asdict(warmup),
                  iterations=dataclasses.asdict(timed), tiers=tiers)
    _write_record(default_record(args, 'performance', backend.name,
                                 backend.describe().get('precision'), batch), record)
    if args.fps_target is not None and tiers['engine']['fps'] < args.fps_target:
        print(f'FAIL: engine FPS {format_fps(tiers["engine"]["fps"])} is below --fps_target '
              f'{args.fps_target}')
        return 1
    return 0
