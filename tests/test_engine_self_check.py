"""The engine self-check (centernet.engine.check, build_engine.py) on the CPU.

The fake TensorRT engine (tests/fake_tensorrt.py) runs through the real TrtBackend, with a CPU
stand-in for its CUDA side, and returns prepared outputs: ONNX Runtime's own FP32 outputs (a
right engine), or those with wh and offset swapped or the heatmap perturbed (wrong engines).
The judge is the shared precision gate when it is importable, and always a stand-in that compares
the heads at a fixed tolerance, so the self-check's own logic (shapes, batches, the
pass/fail paths, sidecar contents, the rejected file, exit codes) is tested either way.
"""

import importlib.util
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import build_engine
from centernet.engine import build as eb
from centernet.engine.profile import FixedShape
from centernet.engine import check as engine_check
from centernet import onnx_export as ox
from centernet.backends import open_backend
from centernet.backends.onnxruntime_backend import OrtBackend
from centernet.backends.tensorrt_backend import TrtBackend
from centernet.errors import UserError
from common import run_main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_tensorrt_contract import (RTX, CpuStandIn, gpu, install_trt, onnx_files,  # noqa: E402,F401
                                    trt)

PROFILE_ARGS = ['--min_batch', '1', '--opt_batch', '2', '--max_batch', '6',
                '--min_side', '64', '--opt_side', '96', '--max_side', '96']
PROFILE = eb.Profile(1, 2, 6, 64, 96, 96)


class StandInGate:
    """precision_gate's API (run_gate -> report with ok, failures, table, to_dict), judging the
    heads by their max |difference| relative to the reference's max |value|."""

    TOLERANCE = {'fp32': 1e-4, 'fp16': 2e-2}

    @classmethod
    def run_gate(cls, reference_fn, candidate_fn, spec, precision, shapes):
        rows = []
        for index, (batch, height, width) in enumerate(shapes):
            canvases = ox.random_canvases(batch, height, width, seed=index)
            reference, candidate = reference_fn(canvases), candidate_fn(canvases)
            errors = {name: float(np.max(np.abs(c - r)) / max(float(np.max(np.abs(r))), 1e-12))
                      for name, r, c in zip(ox.OUTPUT_NAMES, reference, candidate)}
            failures = [f'{batch}x{height}x{width}: {name} differs by {error:.2e} of its '
                        f'scale (tolerance {cls.TOLERANCE[precision]:g})'
                        for name, error in errors.items() if error > cls.TOLERANCE[precision]]
            rows.append(dict(shape=f'{batch}x{height}x{width}', errors=errors,
                             worst=np.float32(max(errors.values())), failures=failures))
        return types.SimpleNamespace(
            ok=not any(r['failures'] for r in rows),
            failures=[f for r in rows for f in r['failures']],
            table=lambda: '\n'.join(['stand-in gate: max |diff| / scale per head'] +
                                    [f'{r["shape"]}  {r["worst"]:.2e}  '
                                     f'{"NO" if r["failures"] else "yes"}' for r in rows]),
            to_dict=lambda: dict(precision=precision, rows=rows))


def real_gate():
    from centernet import precision_gate
    return precision_gate


GATES = [pytest.param(lambda: StandInGate, id='stand-in-gate'),
         pytest.param(real_gate, id='precision-gate', marks=pytest.mark.skipif(
             importlib.util.find_spec('centernet.precision_gate') is None,
             reason='centernet.precision_gate is not merged into this branch yet'))]


@pytest.fixture(scope='module')
def ort_fp32(onnx_files):
    return OrtBackend(onnx_files['fp32'])


def ort_outputs(ort, canvases):
    return [t.numpy() for t in ort.infer(torch.from_numpy(np.ascontiguousarray(canvases)))]


ENGINES = {
    'right': lambda outputs: outputs,
    'swapped wh/offset': lambda outputs: [outputs[0], outputs[2], outputs[1]],
    # right in the first 4 slots of a batch, zeros beyond: only the largest batch shows it
    'wrong beyond slot 4': lambda outputs: [np.concatenate([o[:4], np.zeros_like(o[4:])])
                                            for o in outputs],
    'perturbed heatmap': lambda outputs: [
        np.clip(outputs[0] + np.random.default_rng(0).normal(0, 0.05, outputs[0].shape), 0, 1),
        outputs[1], outputs[2]],
}


@pytest.fixture
def checked(trt, gpu, onnx_files, ort_fp32, tmp_path, monkeypatch):
    """setup(engine kind, gate) -> the folder with both ONNX copies; the fake engine returns the
    kind's outputs, the backend runs on the CPU stand-in."""
    def setup(kind='right', gate=lambda: StandInGate):
        for onnx in onnx_files.values():
            shutil.copyfile(onnx, tmp_path / onnx.name)
        monkeypatch.setattr(engine_check, 'load_gate', gate)
        monkeypatch.setattr(engine_check, 'open_engine', open_on_cpu)
        trt.compute = lambda canvases: ENGINES[kind](ort_outputs(ort_fp32, canvases))
        return tmp_path
    return setup


def open_on_cpu(path, rebuild_path=None):
    """engine.check.open_engine with the CPU stand-in for the backend's CUDA side."""
    return TrtBackend(path, gpu=CpuStandIn(), warn_unchecked=False, rebuild_path=rebuild_path)


def cli(folder, *extra):
    return ['--model', str(folder / 'centernet_fp16.onnx'), '--engine', str(folder / 'm.engine'),
            *PROFILE_ARGS, '--workspace', '1', *extra]


def exit_code(argv):
    with pytest.raises(SystemExit) as done:
        run_main(build_engine.main, argv)
    return done.value.code


# --- what is checked ------------------------------------------------------------------------

def test_check_shapes_cover_the_profile_extremes():
    """The smallest canvas at the smallest batch, a non-square canvas, the largest canvas at the
    largest batch (REFERENCE_BATCH distinct scenes repeated); a static ONNX: its one shape."""
    assert engine_check.check_shapes(PROFILE) == [((1, 64, 64), 1), ((2, 96, 64), 2),
                                                  ((4, 96, 96), 6)]
    assert engine_check.check_shapes(eb.Profile()) == [((1, 32, 32), 1), ((2, 672, 32), 2),
                                                       ((4, 672, 672), 32)]
    assert engine_check.check_shapes(eb.Profile(2, 2, 2, 64, 64, 64)) == [((2, 64, 64), 2)]
    assert engine_check.check_shapes(FixedShape(2, 96, 128)) == [((2, 96, 128), 2)]


def test_the_reference_is_the_fp32_onnx_found_by_its_fp16_name(onnx_files, tmp_path):
    fp16 = Path(shutil.copyfile(onnx_files['fp16'], tmp_path / 'centernet_fp16.onnx'))
    assert engine_check.find_reference_onnx(fp16, 'fp16') is None  # no FP32 beside it
    fp32 = Path(shutil.copyfile(onnx_files['fp32'], tmp_path / 'centernet.onnx'))
    assert engine_check.find_reference_onnx(fp16, 'fp16') == fp32
    assert engine_check.find_reference_onnx(fp32, 'fp32') == fp32
    assert engine_check.find_reference_onnx(fp16, 'fp16', reference_onnx=fp32) == fp32
    with pytest.raises(UserError, match='is the fp16 ONNX; the self-check needs the FP32 one'):
        engine_check.find_reference_onnx(fp32, 'fp32', reference_onnx=fp16)
    with pytest.raises(UserError, match='not found'):
        engine_check.find_reference_onnx(fp16, 'fp16', reference_onnx=tmp_path / 'no.onnx')


# --- a right engine -------------------------------------------------------------------------

@pytest.mark.parametrize('gate', GATES)
def test_a_right_engine_passes_and_is_installed(checked, trt, gate, capsys):
    folder = checked('right', gate)
    assert build_engine.main(cli(folder)) == 0
    out = capsys.readouterr().out
    assert 'self-check: the engine against ONNX Runtime CPU' in out
    assert '4x96x96 (run at batch 6)' in out
    record = json.loads((folder / 'm.engine.json').read_text())
    check = record['self_check']
    assert check['status'] == 'passed' and check['failures'] == []
    assert check['reference_onnx'] == str(folder / 'centernet.onnx')
    assert check['reference_onnx_sha256'] == eb.sha256_of(folder / 'centernet.onnx')
    assert check['shapes'] == [[1, 64, 64], [2, 96, 64], [4, 96, 96]]
    assert check['engine_batches'] == [1, 2, 6]
    json.dumps(check['gate'])  # plain JSON all through
    # the engine really ran at the profile's extremes, the largest batch included
    ran = {shape for _, shape in trt.calls.input_shapes}
    assert {(1, 64, 64, 3), (2, 96, 64, 3), (6, 96, 96, 3)} <= ran
    assert sorted(p.name for p in folder.glob('m*')) == ['m.engine', 'm.engine.json']
    assert record['engine_sha256'] == eb.sha256_of(folder / 'm.engine')
    # --if-stale: a passed check counts as current
    assert build_engine.main(cli(folder, '--if-stale')) == 0
    assert trt.calls.builds == 1


def test_a_checked_engine_opens_without_a_warning(checked, capsys):
    folder = checked('right')
    build_engine.main(cli(folder))
    capsys.readouterr()
    TrtBackend(folder / 'm.engine', gpu=CpuStandIn())
    assert 'warning' not in capsys.readouterr().err


# --- a wrong engine -------------------------------------------------------------------------

@pytest.mark.parametrize('gate', GATES)
@pytest.mark.parametrize('kind', ['swapped wh/offset', 'perturbed heatmap'])
def test_a_wrong_engine_fails_and_is_kept_beside_as_rejected(checked, gate, kind, capsys):
    folder = checked(kind, gate)
    assert exit_code(cli(folder)) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and 'the engine self-check failed' in errors[0]
    assert f'kept beside as {folder / "m.rejected.engine"}' in errors[0]
    assert f'nothing was written to {folder / "m.engine"}' in errors[0]
    assert 'NO' in captured.out  # the table printed, with the failing row
    assert sorted(p.name for p in folder.glob('m*')) == ['m.rejected.engine',
                                                         'm.rejected.engine.json']
    record = json.loads((folder / 'm.rejected.engine.json').read_text())
    assert record['self_check']['status'] == 'failed' and record['self_check']['failures']
    assert record['engine'] == 'm.rejected.engine'
    assert record['engine_sha256'] == eb.sha256_of(folder / 'm.rejected.engine')


def test_an_engine_wrong_only_at_the_largest_batch_fails(checked, capsys):
    """Why the largest canvas runs at the profile's largest batch: an engine wrong only in the
    slots beyond the 4th fails there, and only there."""
    folder = checked('wrong beyond slot 4', real_gate if importlib.util.find_spec(
        'centernet.precision_gate') else lambda: StandInGate)
    assert exit_code(cli(folder)) == 2
    record = json.loads((folder / 'm.rejected.engine.json').read_text())
    assert record['self_check']['failures']
    assert all(f.startswith('4x96x96') for f in record['self_check']['failures'])


def test_a_wrong_rebuild_leaves_the_installed_engine_as_it_was(checked, trt, capsys):
    folder = checked('right')
    assert build_engine.main(cli(folder)) == 0
    before = [(folder / name).read_bytes() for name in ('m.engine', 'm.engine.json')]
    trt.compute = lambda canvases: ENGINES['swapped wh/offset'](
        [np.zeros((len(canvases), 80, canvases.shape[1] // 4, canvases.shape[2] // 4),
                  np.float32)] + [np.ones((len(canvases), 2, canvases.shape[1] // 4,
                                           canvases.shape[2] // 4), np.float32)] * 2)
    assert exit_code(cli(folder, '--force')) == 2
    assert f'{folder / "m.engine"} is unchanged' in capsys.readouterr().err
    assert [(folder / name).read_bytes() for name in ('m.engine', 'm.engine.json')] == before


def test_an_engine_that_cannot_run_is_a_failed_check(checked, trt, capsys):
    folder = checked('right')
    trt.refused_addresses = {'wh'}
    assert exit_code(cli(folder)) == 2
    assert "refused the memory of tensor 'wh'" in capsys.readouterr().err
    assert (folder / 'm.rejected.engine').is_file() and not (folder / 'm.engine').exists()


# --- no check -------------------------------------------------------------------------------

def test_without_an_fp32_onnx_the_engine_is_unchecked_and_stale(checked, trt, capsys):
    folder = checked('right')
    (folder / 'centernet.onnx').unlink()
    assert build_engine.main(cli(folder)) == 0
    out = capsys.readouterr().out
    assert 'warning: the engine is not self-checked: no FP32 ONNX next to' in out
    assert json.loads((folder / 'm.engine.json').read_text())['self_check']['status'] == \
        'unchecked'
    assert build_engine.main(cli(folder, '--if-stale')) == 0  # no passed check: rebuilt
    assert 'self-check: unchecked, not passed' in capsys.readouterr().out
    assert trt.calls.builds == 2


def test_skip_check_records_skipped_and_the_backend_warns_once(checked, trt, capsys):
    folder = checked('right')
    assert build_engine.main(cli(folder, '--skip-check')) == 0
    assert json.loads((folder / 'm.engine.json').read_text())['self_check'] == dict(
        status='skipped', reason='--skip-check')
    assert trt.calls.executions == []  # the engine never ran
    capsys.readouterr()
    TrtBackend(folder / 'm.engine', gpu=CpuStandIn())
    warnings = [line for line in capsys.readouterr().err.splitlines() if 'warning' in line]
    assert len(warnings) == 1 and 'has no passed self-check (sidecar: skipped' in warnings[0]
    assert build_engine.main(cli(folder, '--skip-check', '--if-stale')) == 0  # accepted as is
    assert trt.calls.builds == 1


def test_an_interrupted_check_leaves_no_engine(checked, monkeypatch):
    """Ctrl-C (or a reference that cannot run) during the check: neither an installed, a
    rejected nor a half-checked engine stays; exit 2 with one error line, as everywhere."""
    folder = checked('right')

    class Interrupted:
        @staticmethod
        def run_gate(*args):
            raise KeyboardInterrupt

    monkeypatch.setattr(engine_check, 'load_gate', lambda: Interrupted)
    assert exit_code(cli(folder)) == 2
    assert sorted(p.name for p in folder.glob('m*')) == []


def test_the_rebuild_advice_names_the_users_engine_not_the_staging_file(checked, trt, capsys,
                                                                          monkeypatch):
    """When the self-check cannot even open the new engine (here TensorRT cannot deserialize
    it), the advice inside the error names the --engine path the user gave, never the
    <name>.unchecked staging file the check ran on."""
    folder = checked('right')
    monkeypatch.setattr(trt.Runtime, 'deserialize_cuda_engine', lambda self, blob: None)
    assert exit_code(cli(folder)) == 2
    line = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error:')][0]
    assert 'the engine does not open' in line
    assert f'rebuild it with python3 build_engine.py --model {folder / "centernet_fp16.onnx"} ' \
           f'--engine {folder / "m.engine"} ' in line
    assert f'--engine {folder / "m.unchecked.engine"}' not in line


# --- TensorRT for RTX: built without a GPU, checked at the first load on one --------------------

@pytest.fixture
def pending(install_trt, gpu, onnx_files, ort_fp32, tmp_path, monkeypatch):
    """setup(kind) -> (folder, fake tensorrt_rtx): an engine built by build_engine.py on a
    machine without a GPU (its self-check pending), then a GPU (sm 8.9) appears; the fake engine
    returns the kind's outputs there."""
    def setup(kind='right'):
        rtx = install_trt(RTX)
        for onnx in onnx_files.values():
            shutil.copyfile(onnx, tmp_path / onnx.name)
        monkeypatch.setattr(engine_check, 'load_gate', lambda: StandInGate)
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
        assert build_engine.main(cli(tmp_path)) == 0
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
        gpu.name, gpu.capability = 'NVIDIA GeForce RTX 4090', (8, 9)
        rtx.compute = lambda canvases: ENGINES[kind](ort_outputs(ort_fp32, canvases))
        return tmp_path, rtx
    return setup


def open_through_the_factory(folder):
    return open_backend('tensorrt', folder / 'm.engine', gpu=CpuStandIn())


def test_a_pending_engine_is_checked_at_its_first_load_and_the_result_recorded(pending, capsys):
    """open_backend (what inference.py calls) runs the pending check before the backend serves
    anything, at the profile's extremes, on EAGER-compiled kernels (no fallback run); the
    sidecar then says passed, and where; a second load runs no check."""
    folder, rtx = pending('right')
    record = json.loads((folder / 'm.engine.json').read_text())
    assert record['self_check']['status'] == 'pending' and rtx.calls.executions == []
    capsys.readouterr()
    backend = open_through_the_factory(folder)
    out = capsys.readouterr().out
    assert 'checking it now, at its first load on NVIDIA GeForce RTX 4090 (sm 8.9)' in out
    check = json.loads((folder / 'm.engine.json').read_text())['self_check']
    assert check['status'] == 'passed' and check['at_first_load'] == dict(
        gpu='NVIDIA GeForce RTX 4090', compute_capability='8.9')
    assert {shape for _, shape in rtx.calls.input_shapes} >= {(1, 64, 64, 3), (6, 96, 96, 3)}
    assert rtx.calls.fallback_runs == [] and rtx.calls.jit_compiles
    assert backend.record['self_check']['status'] == 'passed'
    runs = len(rtx.calls.executions)
    open_through_the_factory(folder)
    assert len(rtx.calls.executions) == runs  # nothing checked twice
    assert 'warning' not in capsys.readouterr().err


def test_a_pending_engine_that_fails_is_refused_now_and_later(pending, capsys):
    """A wrong engine fails the check at its first load: one error line naming the rebuild
    (with the runtime and targets it was built with) and ONNX Runtime; the sidecar records the
    failure, so the next load refuses it without running it."""
    folder, rtx = pending('swapped wh/offset')
    with pytest.raises(UserError) as error:
        open_through_the_factory(folder)
    message = str(error.value)
    assert 'failed its self-check' in message and '\n' not in message
    assert '--runtime tensorrt-rtx --compute_capability portable --force' in message
    assert f'inference.py --engine {folder / "centernet.onnx"}' in message
    assert json.loads((folder / 'm.engine.json').read_text())['self_check']['status'] == 'failed'
    runs = len(rtx.calls.executions)
    with pytest.raises(UserError, match='failed its self-check'):
        open_through_the_factory(folder)
    assert len(rtx.calls.executions) == runs
    assert exit_code(cli(folder, '--check')) == 1  # --if-stale would rebuild it


def test_a_pending_engine_without_its_reference_is_refused(pending):
    folder, _ = pending('right')
    (folder / 'centernet.onnx').unlink()
    with pytest.raises(UserError, match=r'self-check is pending, but its reference ONNX '
                                        r'centernet.onnx is not at .*: copy centernet.onnx .* '
                                        r'beside the engine, into .*, or rebuild'):
        open_through_the_factory(folder)


def moved(folder, names=('m.engine', 'm.engine.json', 'centernet.onnx')):
    """The engine built in `folder` copied to another machine (another folder, the build's own
    files gone), with the files `names`."""
    target = folder / 'elsewhere'
    target.mkdir()
    for name in names:
        shutil.copyfile(folder / name, target / name)
    for built in folder.glob('*.*'):
        built.unlink()
    return target


def test_a_pending_engine_moved_with_its_reference_is_checked_there(pending, capsys):
    """Built without a GPU on one machine, copied with its sidecar and reference ONNX to an RTX
    machine (another folder; the build's absolute path does not exist there): the reference is
    found beside the engine by name and sha256, the check runs and is recorded."""
    folder, _ = pending('right')
    target = moved(folder)
    backend = open_backend('tensorrt', target / 'm.engine', gpu=CpuStandIn())
    check = json.loads((target / 'm.engine.json').read_text())['self_check']
    assert check['status'] == 'passed' and check['reference_onnx'] == str(target /
                                                                          'centernet.onnx')
    assert backend.record['self_check']['status'] == 'passed'


def test_a_pending_engine_moved_without_its_reference_says_copy_it_beside(pending, capsys):
    folder, _ = pending('right')
    target = moved(folder, ('m.engine', 'm.engine.json'))
    with pytest.raises(UserError) as error:
        open_backend('tensorrt', target / 'm.engine', gpu=CpuStandIn())
    message = str(error.value)
    assert f'copy centernet.onnx (the ONNX it was built with, sha256 ' in message
    assert f'beside the engine, into {target}' in message and '\n' not in message
    (target / 'centernet.onnx').write_bytes(b'another ONNX')  # the name, not the file
    with pytest.raises(UserError, match='centernet.onnx has changed since the build'):
        open_backend('tensorrt', target / 'm.engine', gpu=CpuStandIn())


def test_a_first_load_check_through_links_is_recorded_in_the_linked_sidecar(pending):
    """serve.py's model instances open the engine through symbolic links in a temporary
    repository: the result goes into the engine's own sidecar (the link's target), and the link
    stays a link, so the next start does not check again."""
    folder, _ = pending('right')
    linked = folder / 'repository'
    linked.mkdir()
    for name in ('m.engine', 'm.engine.json'):
        (linked / name).symlink_to(folder / name)
    open_backend('tensorrt', linked / 'm.engine', gpu=CpuStandIn())
    assert (linked / 'm.engine.json').is_symlink()
    assert json.loads((folder / 'm.engine.json').read_text())['self_check']['status'] == 'passed'


def test_a_first_load_check_in_a_read_only_folder_warns_and_goes_on(pending, capsys,
                                                                    monkeypatch):
    """The engine folder cannot be written (a read-only mount; the suite runs as root, so the
    folder is made unwritable where fileio asks): one warning line, the backend serves with the
    passed result in memory, and the sidecar still says pending, so the next load checks again."""
    import os
    folder, _ = pending('right')
    real_access = os.access
    monkeypatch.setattr(os, 'access', lambda path, mode, **kw: False if Path(path) == folder
                        and mode == os.W_OK else real_access(path, mode, **kw))
    capsys.readouterr()
    backend = open_backend('tensorrt', folder / 'm.engine', gpu=CpuStandIn())
    warnings = [line for line in capsys.readouterr().err.splitlines() if 'warning' in line]
    assert [line.split(' (')[0] for line in warnings] == [
        'warning: the runtime cache was not saved',  # its own line, as before
        'warning: the self-check result']
    assert warnings[1].startswith('warning: the self-check result (passed) was not recorded in '
                                  f'{folder / "m.engine.json"} (output folder {folder} is not '
                                  'writable')
    assert backend.record['self_check']['status'] == 'passed'
    backend.infer(torch.zeros((1, 64, 64, 3), dtype=torch.uint8))
    assert json.loads((folder / 'm.engine.json').read_text())['self_check']['status'] == \
        'pending'


def test_a_pending_engine_opened_directly_warns(pending, capsys):
    """TrtBackend itself does not run the check (it sits below engine.check); opened directly,
    a pending engine says that its detections are not verified and how to have them checked."""
    folder, _ = pending('right')
    capsys.readouterr()
    TrtBackend(folder / 'm.engine', gpu=CpuStandIn())
    err = capsys.readouterr().err
    assert 'has a pending self-check' in err and 'centernet.backends.open_backend' in err


def test_an_rtx_engine_built_on_its_target_is_checked_at_once_and_keeps_its_kernels(
        install_trt, gpu, onnx_files, ort_fp32, tmp_path, monkeypatch):
    """With a target GPU present the check runs right after the build, as with TensorRT; the
    kernels compiled for it (the staging engine's runtime cache) stay with the installed engine,
    and nothing of the staging engine is left."""
    rtx = install_trt(RTX)
    gpu.name, gpu.capability = 'NVIDIA GeForce RTX 4090', (8, 9)
    for onnx in onnx_files.values():
        shutil.copyfile(onnx, tmp_path / onnx.name)
    monkeypatch.setattr(engine_check, 'load_gate', lambda: StandInGate)
    monkeypatch.setattr(engine_check, 'open_engine', open_on_cpu)
    rtx.compute = lambda canvases: ort_outputs(ort_fp32, canvases)
    assert build_engine.main(cli(tmp_path, '--compute_capability', 'current')) == 0
    record = json.loads((tmp_path / 'm.engine.json').read_text())
    assert record['self_check']['status'] == 'passed' and record['targets'] == ['8.9']
    assert sorted(p.name for p in tmp_path.glob('m*')) == [
        'm.engine', 'm.engine.json', 'm.engine.runtime_cache']
    compiled = len(rtx.calls.jit_compiles)
    backend = TrtBackend(tmp_path / 'm.engine', gpu=CpuStandIn(), log=lambda *a: None)
    backend.infer(torch.zeros((1, 64, 64, 3), dtype=torch.uint8))  # a shape the check ran
    assert rtx.calls.runtime_cache_loads == [True] and len(rtx.calls.jit_compiles) == compiled
