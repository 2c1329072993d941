"""inference.py end to end on a generated COCO-format set: accuracy, batching, backends, perf, demo."""

import json
from pathlib import Path
from collections import defaultdict

import numpy as np
import pytest

import inference
from common import run_main
from conftest import CONFIG
from matching import assert_same_detections

from centernet.synthetic import COCO_LIKE_SIZES, write_coco_dataset
from centernet.timing import STAGES


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco')
    # 9 images, 5 canvas shapes, one image with no annotations is fine too
    write_coco_dataset(root, COCO_LIKE_SIZES[::2] + ((23, 17),), seed=3)
    return root


def run_cli(argv):
    with pytest.raises(SystemExit) as code:
        run_main(inference.main, argv + ['--quiet'])
    return code.value.code


def by_image(results):
    grouped = defaultdict(list)
    for r in results:
        grouped[r['image_id']].append(r)
    out = {}
    for image_id, rows in grouped.items():
        boxes = np.array([r['bbox'] for r in rows])
        boxes[:, 2:] += boxes[:, :2]
        out[image_id] = (boxes, np.array([r['score'] for r in rows]),
                         np.array([r['category_id'] for r in rows]))
    return out


@pytest.fixture(scope='module')
def onnx_batch1(dataset, onnx_paths, tmp_path_factory):
    out = tmp_path_factory.mktemp('runs')
    assert run_cli(['--engine', str(onnx_paths['fp32']), '--datasets', str(dataset),
                    '--batchsize', '1', '--workers', '0', '--save_json', str(out / 'b1.json'),
                    '--record', str(out / 'b1.record.json')]) == 0
    return json.loads((out / 'b1.json').read_text()), json.loads((out / 'b1.record.json').read_text())


def test_accuracy_run_writes_all_detections_and_record(onnx_batch1, dataset):
    results, record = onnx_batch1
    ann = json.loads((dataset / 'annotations/instances_val2017.json').read_text())
    assert len(results) == 100 * len(ann['images'])
    assert {r['image_id'] for r in results} == {i['id'] for i in ann['images']}
    assert record['images'] == len(ann['images']) and record['backend']['backend'] == 'onnxruntime'
    assert set(record['metrics']) >= {'mAP', 'mAP_50', 'AR@100'}
    assert len(record['canvas_shapes']) >= 4


def test_accuracy_record_breaks_the_wall_time_down(onnx_batch1):
    record = onnx_batch1[1]
    times = record['times']
    stages = {name for name, _ in STAGES}
    assert set(times) == stages | {'other', 'total'}
    assert all(times[name] >= 0 for name in times)
    assert times['network'] > 0 and times['annotations'] > 0 and times['evaluation'] > 0
    assert sum(times[name] for name in stages) <= times['total'] + 1e-9
    assert abs(sum(times[name] for name in stages) + times['other'] - times['total']) < 1e-9
    assert times['evaluation'] == record['eval_seconds']
    assert times['loader_wait'] == record['loader_wait_seconds']
    assert record['evaluator'] == 'faster-coco-eval'
    assert sum(record['eval_steps'].values()) <= record['eval_seconds']


def test_evaluators_give_the_same_metrics_through_the_cli(dataset, onnx_paths, tmp_path):
    metrics = {}
    for name in ('pycocotools', 'faster'):
        record = tmp_path / f'{name}.json'
        assert run_cli(['--engine', str(onnx_paths['fp32']), '--datasets', str(dataset),
                        '--limit', '3', '--workers', '0', '--evaluator', name,
                        '--record', str(record)]) == 0
        metrics[name] = json.loads(record.read_text())
    assert metrics['pycocotools']['evaluator'] == 'pycocotools'
    assert metrics['pycocotools']['metrics'] == metrics['faster']['metrics']


@pytest.mark.parametrize('extra', [['--batchsize', '32', '--workers', '2'],
                                   ['--batchsize', '3', '--workers', '1']])
def test_batched_detections_equal_batch_1(onnx_batch1, dataset, onnx_paths, tmp_path, extra):
    out = tmp_path / 'b.json'
    assert run_cli(['--engine', str(onnx_paths['fp32']), '--datasets', str(dataset),
                    '--save_json', str(out), '--record', str(tmp_path / 'r.json')] + extra) == 0
    single, batched = by_image(onnx_batch1[0]), by_image(json.loads(out.read_text()))
    assert single.keys() == batched.keys()
    for image_id in single:
        assert_same_detections(batched[image_id], single[image_id], what=f'image {image_id}')


# --compile: TorchInductor on the CPU (the GPU's kernels differ; gpu_check compares those), on
# the first two images, which share one canvas shape: one compilation. Slow on purpose: compiling
# the network's C++ kernels takes ~30 s on 2 cores with an empty inductor cache, ~5 s from it.
# (A second canvas shape would add torch's shape-generic recompilation, another ~30 s cold:
# torch's own mechanism, which the kit only switches on.)
@pytest.mark.parametrize('extra', [[], ['--compile', 'default', '--batchsize', '1', '--limit', '2']])
def test_torch_backend_equals_onnxruntime(onnx_batch1, dataset, checkpoint_path, tmp_path, extra):
    out, record = tmp_path / 't.json', tmp_path / 'r.json'
    assert run_cli(['--backend', 'torch', '--weight', str(checkpoint_path), '--cfg', str(CONFIG),
                    '--device', 'cpu', '--datasets', str(dataset), '--batchsize', '4',
                    '--workers', '0', '--save_json', str(out), '--record', str(record)]
                   + extra) == 0
    compiled = json.loads(record.read_text())['backend']['compile_mode']
    assert compiled == (extra[1] if extra else None)
    single, torch_results = by_image(onnx_batch1[0]), by_image(json.loads(out.read_text()))
    assert len(torch_results) == (2 if extra else len(single))
    for image_id in torch_results:
        assert_same_detections(torch_results[image_id], single[image_id], what=f'{image_id}')


def test_acc_target(dataset, onnx_paths, tmp_path, onnx_batch1):
    ap = onnx_batch1[1]['metrics']['mAP']
    common = ['--engine', str(onnx_paths['fp32']), '--datasets', str(dataset), '--limit', '2',
              '--workers', '0', '--record', str(tmp_path / 'r.json')]
    assert run_cli(common + ['--acc_target', '0.9']) == 1
    assert run_cli(common + ['--acc_target', str(min(ap, 0.0))]) == 0


def test_perf_only_reports_three_tiers(dataset, onnx_paths, tmp_path, capsys):
    # `--perf_only` and the reference scripts' `--perf_only True` are one flag: one run, with
    # the reference spelling (each spelling had its own run, the same 6 s twice)
    assert inference.parse_args(['--perf_only']).perf_only is True
    assert inference.parse_args(['--perf_only', 'True']).perf_only is True
    flag = ['--perf_only', 'True']
    record = tmp_path / 'perf.json'
    capsys.readouterr()
    # one timed run a tier: what is reported, not how fast (the pipeline tier's images are
    # --limit's, whatever --iterations says)
    code = run_cli(['--engine', str(onnx_paths['fp32']), '--batchsize', '1', '--warmup', '0',
                    '--iterations', '1', '--datasets', str(dataset), '--limit', '2',
                    '--workers', '0', '--record', str(record)] + flag)
    assert code == 0
    tiers = json.loads(record.read_text())['tiers']
    assert set(tiers) == {'engine', 'engine+io', 'pipeline'}
    assert all(t['fps'] > 0 for t in tiers.values())
    # The table says where each tier ran, and why the pipeline's canvases can be faster: the
    # set's first two images (dataset fixture) have their own canvas sizes, not 672 x 672.
    out = capsys.readouterr().out
    assert 'network alone, 672x672 canvases already on the CPU' in out and 'device' not in out
    shapes = tiers['pipeline']['canvas_shapes']
    mean = sum(int(hw.split('x')[0]) * int(hw.split('x')[1]) * n for hw, n in shapes.items()) / 2
    assert tiers['pipeline']['canvas_pixels_mean'] == mean
    assert (f"The pipeline tier's canvases average {mean / 1e3:.0f} thousand pixels, "
            f"{mean / 672 ** 2:.0%} of 672x672") in out
    assert run_cli(['--engine', str(onnx_paths['fp32']), '--batchsize', '1', '--warmup', '0',
                    '--iterations', '1', '--perf_only', '--fps_target', '1e9',
                    '--record', str(record)]) == 1


def test_demo_draws_pictures(dataset, onnx_paths, tmp_path):
    import cv2
    out = tmp_path / 'pictures'
    images = dataset / 'images' / 'val2017'
    assert run_cli(['--engine', str(onnx_paths['fp32']), '--images', str(images), '--out', str(out),
                    '--score_thr', '0.3', '--batchsize', '4']) == 0
    listing = json.loads((out / 'detections.json').read_text())
    assert len(listing) == len(list(images.iterdir()))
    for entry in listing:
        drawn, original = cv2.imread(entry['annotated']), cv2.imread(entry['file'])
        assert drawn.shape == original.shape
        assert len(entry['detections']) == 100
        if any(d['score'] >= 0.3 for d in entry['detections']):
            assert np.abs(drawn.astype(int) - original.astype(int)).max() > 100  # boxes drawn


def test_demo_fits_a_large_photo_and_maps_boxes_back(onnx_paths, tmp_path):
    """Analytic: a 2x pixel-replicated copy of a picture, shrunk by exactly 1/2 (INTER_AREA
    averages 2x2 equal pixels), is the picture itself; its boxes, mapped back, are exactly twice
    the picture's own."""
    import cv2
    from centernet.synthetic import scene
    small, _ = scene(np.random.default_rng(5), 831, 600, num_objects=6)   # 600 x 831
    large = cv2.resize(small, (1662, 1200), interpolation=cv2.INTER_NEAREST)
    folder = tmp_path / 'in'
    folder.mkdir()
    cv2.imwrite(str(folder / 'small.png'), small)
    cv2.imwrite(str(folder / 'large.png'), large)
    out = tmp_path / 'out'
    # 832: the largest canvas side, so the largest picture side is 831 -> a scale of exactly 1/2
    assert run_cli(['--engine', str(onnx_paths['fp32']), '--images', str(folder), '--out',
                    str(out), '--max_canvas', '832', '--workers', '0']) == 0
    entries = {Path(e['file']).stem: e for e in json.loads((out / 'detections.json').read_text())}
    assert entries['small']['scale_xy'] == [1.0, 1.0]
    assert entries['large']['scale_xy'] == [0.5, 0.5]
    assert entries['large']['size_hw'] == [1200, 1662]
    assert entries['large']['network_size_hw'] == [600, 831]
    assert cv2.imread(entries['large']['annotated']).shape == large.shape  # drawn on the original
    small_boxes = np.array([d['bbox_xyxy'] for d in entries['small']['detections']])
    large_boxes = np.array([d['bbox_xyxy'] for d in entries['large']['detections']])
    np.testing.assert_allclose(large_boxes, 2 * small_boxes, rtol=0, atol=1e-3)
    assert [d['score'] for d in entries['large']['detections']] == \
        [d['score'] for d in entries['small']['detections']]


def test_demo_leaves_pictures_the_model_can_take_alone(spec):
    from centernet.demo import PictureFit
    fit = PictureFit(spec, (672, 672))
    assert fit.size(640, 480) == (640, 480)            # canvas 672 x 512: fits
    assert fit.size(3000, 4000) == (503, 671)          # canvas 512 x 672
    assert spec.canvas_side(671) == 672 and spec.canvas_side(672) == 704


def test_higher_scores_are_drawn_on_top():
    from centernet.demo import Drawing, colour_for
    image = np.zeros((120, 160, 3), np.uint8)
    box = np.array([[20, 60, 120, 110]] * 2, np.float32)   # same place: captions overlap
    draw = Drawing(['low', 'high'], score_thr=0.3, max_boxes=20)
    for order in ([0, 1], [1, 0]):
        scores = np.array([0.4, 0.9], np.float32)[order]
        labels = np.array([0, 1])[order]
        drawn = draw(image, box, scores, labels)
        assert tuple(int(v) for v in drawn[61, 21]) == colour_for(1)  # the 0.9 box's frame


def test_help_shows_defaults_and_real_switches(capsys):
    with pytest.raises(SystemExit) as code:
        inference.parse_args(['--help'])
    assert code.value.code == 0
    text = ' '.join(capsys.readouterr().out.split())  # argparse wraps lines
    assert 'images per batch (default: 32 when the model runs on a GPU, 4 on the CPU' in text
    assert '[--perf_only]' in text and 'PERF_ONLY' not in text and 'QUIET' not in text
    assert 'a TensorRT engine .engine/.plan/.trt, an ONNX .onnx (ONNX Runtime) or an mmdet ' \
        'checkpoint .pth/.pt' in text


@pytest.mark.parametrize('argv, expected', [
    (['--perf_only'], True), (['--perf_only', 'True'], True), (['--perf_only', 'false'], False),
    (['--perf_only=yes'], True), (['--perf_only', 'False', '--quiet'], False), ([], False),
])
def test_switches_take_the_reference_spelling(argv, expected):
    assert inference.parse_args(argv).perf_only is expected


@pytest.mark.parametrize('argv, check, simplify', [
    (['--skip-check', 'True'], False, True), (['--skip_check', 'false'], True, True),
    (['--no-simplify=false'], True, True), (['--no-simplify', 'yes', '--skip-check'], False, False),
])
def test_off_switches_take_the_reference_spelling_too(argv, check, simplify):
    """store_false switches as well (`--skip-check True` was refused as an extra argument)."""
    import export
    args = export.parse_args(['--weight', 'w.pth', *argv])
    assert (args.check, args.simplify) == (check, simplify)


def test_switch_with_a_bad_value_is_refused(capsys):
    with pytest.raises(SystemExit) as code:
        inference.parse_args(['--perf_only=maybe'])
    assert code.value.code == 2
    assert 'ignored explicit argument' in capsys.readouterr().err


@pytest.mark.parametrize('ap, code, shown', [(0.2546, 1, '0.2546'), (0.25496, 0, '0.2550'),
                                             (0.255, 0, '0.2550')])
def test_ap_is_compared_as_printed(dataset, onnx_paths, tmp_path, monkeypatch, capsys,
                                   ap, code, shown):
    """The table and the --acc_target verdict use the same 4-decimal AP."""
    from centernet.evaluate import CocoEvaluator  # both evaluators' evaluate()
    real = CocoEvaluator.evaluate

    def with_ap(*args, **kwargs):
        return {**real(*args, **kwargs), 'mAP': ap}
    monkeypatch.setattr(CocoEvaluator, 'evaluate', with_ap)
    capsys.readouterr()
    assert run_cli(['--engine', str(onnx_paths['fp32']), '--datasets', str(dataset), '--limit',
                    '1', '--workers', '0', '--record', str(tmp_path / 'r.json'),
                    '--acc_target', '0.255']) == code
    out = capsys.readouterr().out
    table_row = out.split('IOU@0.5:0.95')[1].splitlines()[2]
    assert table_row.split()[-1] == shown
    assert (f'FAIL: AP {shown} is below --acc_target 0.255' in out) == (code == 1)
    assert (f'PASS: AP {shown} meets --acc_target 0.255' in out) == (code == 0)


@pytest.mark.parametrize('quiet', [False, True])
def test_accuracy_run_estimates_its_run_time(dataset, onnx_paths, tmp_path, capsys, quiet):
    """One estimate line, on a line of its own (stdout; the bar is on stderr); --quiet: none."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as code:
        run_main(inference.main, ['--engine', str(onnx_paths['fp32']), '--datasets', str(dataset),
                                  '--batchsize', '1', '--limit', '5', '--workers', '0',
                                  '--record', str(tmp_path / 'r.json')] + ['--quiet'] * quiet)
    assert code.value.code == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if 'estimate:' in line]
    assert 'estimate:' not in captured.err
    if quiet:
        assert lines == [] and captured.err == ''
        return
    assert len(lines) == 1
    assert lines[0].startswith('estimate: about ') and \
        'more for the remaining 2 of 5 images at ' in lines[0], lines


def test_perf_sized_by_time_has_a_spread(onnx_paths, tmp_path, capsys):
    record = tmp_path / 'perf.json'
    assert run_cli(['--engine', str(onnx_paths['fp32']), '--batchsize', '1', '--perf_only',
                    '--warmup_seconds', '0', '--seconds', '0.01', '--record', str(record)]) == 0
    saved = json.loads(record.read_text())
    for tier in saved['tiers'].values():
        assert tier['iterations'] >= 3                       # a few runs however short the time
        assert tier['fps_p10'] <= tier['fps_p90']
    assert saved['iterations'] == {'count': None, 'seconds': 0.01, 'minimum': 3}
    out = capsys.readouterr().out
    assert 'FPS p10-p90' in out and 'about 0.01 s (at least 3 run(s))' in out


def test_every_flag_takes_both_spellings(capsys):
    """One rule in common.ArgumentParser, for every CLI: `--skip_check` is `--skip-check`."""
    import build_engine
    import export
    args = export.parse_args(['--weight', 'w.pth', '--skip_check', '--no_simplify', '--if-stale',
                              '--calib-images=5'])
    assert (args.check, args.simplify, args.if_stale, args.calib_images) == (False, False, True, 5)
    args = inference.parse_args(['--skip-bad-images', 'True', '--max-pixels', '1e6',
                                 '--perf-only=false', '--input-name', 'canvas'])
    assert (args.skip_bad_images, args.max_pixels, args.perf_only, args.input_name) == \
        (True, 1e6, False, 'canvas')
    with pytest.raises(SystemExit):
        build_engine.parse_args(['--help'])
    text = capsys.readouterr().out
    assert '--skip-check ' in text and '--skip_check' not in text  # help: one spelling
    assert '--max-side' not in text and '--max_side' in text


def test_max_side_of_build_engine_is_not_the_pictures_limit(capsys, onnx_paths):
    with pytest.raises(SystemExit) as code:
        run_main(inference.main, ['--engine', str(onnx_paths['fp32']), '--images', 'x.jpg',
                                  '--max_side', '832'])
    assert code.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: inference.py has no --max_side (that is build_engine.py's profile limit): the "
        "pictures' limit is --max_canvas")


def test_captions_of_boxes_at_the_top_edge_go_inside_them():
    """A caption that does not fit above its box is drawn inside it, from its top edge: two
    boxes near the top keep their captions apart (they used to pile up at y = 0)."""
    from centernet.demo import Drawing, colour_for
    image = np.zeros((120, 300, 3), np.uint8)
    boxes = np.array([[10, 4, 100, 100], [150, 30, 290, 110]], np.float32)
    drawn = Drawing(['a', 'b'], score_thr=0.3, max_boxes=20)(
        image, boxes, np.array([0.9, 0.8], np.float32), np.array([0, 1]))
    assert not drawn[:3].any()  # nothing above the first box's frame (rows 3-5)
    first = [y for y in range(120) if tuple(int(v) for v in drawn[y, 12]) == colour_for(0)]
    assert first[0] == 3 and 20 in first  # its caption's tag, inside the box below the frame
    second = [y for y in range(120) if tuple(int(v) for v in drawn[y, 152]) == colour_for(1)]
    assert second[0] < 29 - 10  # room above: that caption stays above its box's frame
