"""The tools a person runs by hand still run: gpu_check's plumbing on the CPU, benchmark helpers."""

import json
import subprocess
import sys

from conftest import ROOT


# Slow (~16 s): gpu_check.py as a person runs it, a Python of its own with every tier.
def test_gpu_check_plumbing_on_cpu(tmp_path):
    out = tmp_path / 'gpu_check.json'
    done = subprocess.run([sys.executable, str(ROOT / 'tools' / 'gpu_check.py'), '--cpu-smoke',
                           '--images', '3', '--batchsize', '2', '--iterations', '1',
                           '--side', '128', '--json', str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    rate, matched, required = report['parity']['torch-cpu-fp32']['strict']
    assert rate == 1.0 and required > 100  # torch FP32 == ONNX Runtime FP32, as sets
    assert report['performance']['torch-cpu-fp32']['engine']['fps'] > 0
    assert 'TFLOP/s' in done.stdout


def test_model_flops_are_the_published_45_gflop(spec):
    from centernet.perf import model_gflops
    assert abs(model_gflops(spec) - 45.1) < 0.05


def _benchmark_eval(tmp_path, *argv):
    out = tmp_path / 'benchmark_eval.json'
    done = subprocess.run([sys.executable, str(ROOT / 'tools' / 'benchmark_eval.py'), *argv,
                           '--json', str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'max |difference| over the 12 stats' in done.stdout
    return json.loads(out.read_text())


def test_benchmark_eval_on_a_generated_set(tmp_path):
    report = _benchmark_eval(tmp_path, '--images', '40')
    # 0.0 with numpy 2; numpy 1.26 (what requirements-serve.txt installs) gives one stat a
    # last-bit difference (5.6e-17)
    assert report['max_difference'] <= 1e-16 and report['detections'] > 3000
    assert {run['library'] for run in report['runs'].values()} == {'pycocotools',
                                                                   'faster-coco-eval'}


def test_benchmark_eval_on_saved_detections(tmp_path):
    """The golden set's annotation file and CocoMetric's own results JSON -> mmdet's numbers."""
    from conftest import GOLDEN
    meta = json.loads((GOLDEN / 'golden.json').read_text())
    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'annotations' / 'instances_val2017.json').write_text(
        (GOLDEN / 'annotations.json').read_text())
    (tmp_path / 'saved.json').write_text(json.dumps(meta['coco_metric_results']))
    report = _benchmark_eval(tmp_path, '--datasets', str(tmp_path), '--detections',
                             str(tmp_path / 'saved.json'))
    assert report['max_difference'] == 0.0
    for run in report['runs'].values():
        assert round(run['metrics']['mAP'], 3) == meta['coco_metric']['bbox_mAP']
