"""INT8 weights the gate refuses: the scripts' own advice leads to the end (its own file, so
that pytest-xdist runs it beside the FP16 journey in test_scripts.py)."""

import json

from script_runs import env_for, run_script


# Slow (~33 s) on purpose: the refused calibration, then the one the advice asks for, as run.
def test_int8_scripts_reach_the_end_with_weights_the_gate_refuses(journey):
    """Seed 41's weights (gate_cases: calibrated BatchNorm, heads x1.5) calibrated on the
    journey's three pictures: the INT8 gate refuses them (offset heads past the limit). The
    refusal names the script's variables; INT8_UNCHECKED=1 writes and uses the graph, and the
    next run with it reuses that graph, with a warning each time, instead of deleting it."""
    from centernet import onnx_export as ox
    root, checkpoints = journey
    env = dict(env_for(root, checkpoints[41], 'models_int8'), ACC_TARGET='0')
    models = root / 'models_int8'
    quick = dict(BATCHSIZE=1, WARMUP=0, ITERATIONS=1)
    done = run_script('infer_centernet_int8_performance.sh', dict(env, **quick), '--record',
                      str(root / 'p8.json'), '--quiet')
    assert done.returncode == 2
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith('error: the int8 ONNX was refused by the precision gate')
    assert 'CALIB_IMAGES=' in error and 'CALIB_METHOD=' in error and 'INT8_UNCHECKED=1' in error
    assert '--skip-check' not in error and '--calib' not in error  # flags a script user lacks
    assert (models / 'centernet_int8_cpu.rejected.onnx').is_file()
    # following the advice
    unchecked = dict(env, INT8_UNCHECKED=1)
    done = run_script('infer_centernet_int8_accuracy.sh', unchecked, '--record',
                      str(root / 'a8.json'), '--quiet')
    assert done.returncode == 0, done.stderr[-3000:]
    onnx = models / 'centernet_int8_cpu_unchecked.onnx'
    assert f'== warning: INT8_UNCHECKED=1: {onnx} is written and used without the precision ' \
        'gate' in done.stdout
    assert 'WITHOUT the precision gate, as asked' in done.stdout
    assert f'warning: {onnx} was written without the precision gate' in done.stderr  # inference
    assert ox.read_metadata(onnx)[2][ox.METADATA_GATE] == ox.GATE_SKIPPED
    report = json.loads((models / 'centernet_int8_cpu_unchecked.export.json').read_text())
    assert report['outputs']['int8']['status'] == 'skipped'
    made = onnx.stat()
    # the next run with the same setting: reused, warned about, not deleted
    done = run_script('infer_centernet_int8_performance.sh', dict(unchecked, **quick), '--record',
                      str(root / 'p8.json'), '--quiet')
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'reusing the int8 export (written WITHOUT the precision gate, as INT8_UNCHECKED=1 ' \
        'asks' in done.stdout
    assert f'warning: {onnx} was written without the precision gate' in done.stderr
    assert (onnx.stat().st_ino, onnx.stat().st_mtime_ns) == (made.st_ino, made.st_mtime_ns)
    assert json.loads((root / 'p8.json').read_text())['backend']['model'] == str(onnx)
