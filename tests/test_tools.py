"""The tools a person runs by hand still run: gpu_check's plumbing on the CPU, benchmark helpers."""

import json
import subprocess
import sys

from conftest import ROOT


def test_gpu_check_plumbing_on_cpu(tmp_path):
    out = tmp_path / 'gpu_check.json'
    done = subprocess.run([sys.executable, str(ROOT / 'tools' / 'gpu_check.py'), '--cpu-smoke',
                           '--images', '3', '--batchsize', '2', '--iterations', '1',
                           '--json', str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    rate, matched, required = report['parity']['torch-cpu-fp32']['strict']
    assert rate == 1.0 and required > 100  # torch FP32 == ONNX Runtime FP32, as sets
    assert report['performance']['torch-cpu-fp32']['engine']['fps'] > 0
    assert 'TFLOP/s' in done.stdout


def test_model_flops_are_the_published_45_gflop(spec):
    from centernet.perf import model_gflops
    assert abs(model_gflops(spec) - 45.1) < 0.05
