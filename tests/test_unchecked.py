"""Graphs written without the precision gate (export.py --skip-check; the INT8 scripts'
INT8_UNCHECKED=1): marked in their metadata, warned about by every backend that runs them, reused
by --if-stale only when the request is unchecked too; and refusal advice in the terms of the
command the user ran (tests/test_scripts.py runs the scripts themselves)."""

import json
import re
import sys
from pathlib import Path

import pytest

from conftest import CONFIG, ROOT
from centernet import onnx_export as ox
from centernet.checkpoint import sha256_of
from centernet.errors import SCRIPT_ENV

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_tensorrt_contract import CpuStandIn, TRT10, gpu, install_trt, quiet  # noqa: E402,F401


@pytest.fixture(scope='module')
def unchecked_onnx(tmp_path_factory, model):
    """FP32 as export.py --skip-check writes it, and the FP16 graph made from it."""
    folder = tmp_path_factory.mktemp('unchecked')
    fp32 = ox.export_fp32(model, folder / 'centernet.onnx', simplify=False, classes=['x'] * 80,
                          log=quiet, gated=False)
    return dict(fp32=fp32, fp16=ox.convert_fp16(fp32, folder / 'centernet_fp16.onnx', log=quiet))


def _warnings(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith('warning')]


def test_onnx_runtime_warns_once_for_an_unchecked_graph_only(unchecked_onnx, onnx_paths, capsys,
                                                             monkeypatch):
    from centernet.backends.onnxruntime_backend import OrtBackend
    assert ox.read_metadata(unchecked_onnx['fp16'])[2][ox.METADATA_GATE] == ox.GATE_SKIPPED
    capsys.readouterr()
    OrtBackend(onnx_paths['fp32'])  # gated by export.py (conftest): nothing to say
    assert _warnings(capsys) == []
    OrtBackend(unchecked_onnx['fp16'])  # inherited from the graph it was made from
    assert _warnings(capsys) == [
        f'warning: {unchecked_onnx["fp16"]} was written without the precision gate (export.py '
        '--skip-check): its detections are not checked against PyTorch FP32; export it again '
        'without --skip-check to check it']
    monkeypatch.setenv(SCRIPT_ENV, 'infer_centernet_int8_accuracy.sh')
    OrtBackend(unchecked_onnx['fp32'])
    [warning] = _warnings(capsys)
    assert 'run without INT8_UNCHECKED=1 to check it' in warning and '--skip' not in warning


def test_tensorrt_warns_for_an_engine_built_from_an_unchecked_graph(install_trt, gpu,
                                                                    unchecked_onnx, tmp_path,
                                                                    capsys):
    from centernet.engine import build as eb
    from centernet.backends.tensorrt_backend import TrtBackend
    install_trt(TRT10)
    engine = tmp_path / 'm.engine'
    eb.build_engine(unchecked_onnx['fp16'], engine, 'fp16', eb.Profile(1, 1, 2, 64, 64, 96),
                    check=False, log=quiet)
    capsys.readouterr()
    TrtBackend(engine, gpu=CpuStandIn())
    warnings = _warnings(capsys)
    assert len(warnings) == 2 and 'has no passed self-check' in warnings[0]
    assert warnings[1].startswith(f'warning: the ONNX {engine} was built from was written '
                                  'without the precision gate')


def _report(tmp_path, status):
    """What export.py --precision fp32 leaves: the file, and a report that says `status`."""
    from centernet.export_cli import REPORT_FORMAT, report_path
    weight, output = tmp_path / 'w.pth', tmp_path / 'm.onnx'
    weight.write_bytes(b'weights')
    output.write_bytes(b'graph')
    report_path(output).write_text(json.dumps(dict(
        format=REPORT_FORMAT, format_version=ox.FORMAT_VERSION, weight_sha256=sha256_of(weight),
        config_sha256=sha256_of(CONFIG), end2end=False, static=None,
        outputs={'fp32': dict(status=status, sha256=sha256_of(output))})))
    return output, weight


@pytest.mark.parametrize('status, gated, unchecked', [
    ('passed', None, None),
    ('skipped', 'its fp32 graph was written without the precision gate, and this run asks for a '
                'gated one', None),
    ('failed', 'its fp32 graph has status failed, not passed',
     'its fp32 graph has status failed, not passed')])
def test_if_stale_takes_an_unchecked_graph_only_when_asked_for_one(tmp_path, status, gated,
                                                                   unchecked):
    """--if-stale: a gated request reuses only a passed graph; --skip-check also the graph it
    asked for before (a refused one never)."""
    from centernet.export_cli import reuse_problem
    output, weight = _report(tmp_path, status)
    assert reuse_problem(output, 'fp32', weight, CONFIG, check=True) == gated
    assert reuse_problem(output, 'fp32', weight, CONFIG, check=False) == unchecked


def _script_variables():
    text = (ROOT / 'scripts' / '_common.sh').read_text() + (ROOT / 'scripts' /
                                                            '_int8.sh').read_text()
    return set(re.findall(r'\$\{([A-Z0-9_]+)', text))


@pytest.mark.parametrize('precision', ['fp32', 'fp16', 'int8'])
def test_refusal_advice_names_what_the_command_run_accepts(precision, monkeypatch, capsys):
    """export.py's own flags (as its --help lists them) when it was run by hand; the script's
    variables (those the scripts read) when a script ran it, and then no flag at all."""
    import export
    from centernet.export_cli import refusal_advice
    monkeypatch.delenv(SCRIPT_ENV, raising=False)
    flags = set(re.findall(r'--[a-z_-]+', refusal_advice(precision)))
    with pytest.raises(SystemExit):
        export.parse_args(['--help'])
    accepted = set(re.findall(r'--[a-z_-]+', capsys.readouterr().out))
    assert '--skip-check' in flags and flags <= accepted
    monkeypatch.setenv(SCRIPT_ENV, 'infer_centernet_int8_accuracy.sh')
    advice = refusal_advice(precision)
    assert '--' not in advice
    variables = set(re.findall(r'\b([A-Z][A-Z0-9_]+)=', advice))
    assert variables <= _script_variables()
    if precision == 'int8':
        assert variables == {'CALIB_DIR', 'CALIB_IMAGES', 'CALIB_METHOD', 'INT8_UNCHECKED'}


@pytest.mark.parametrize('script', ['infer_centernet_int8_accuracy.sh',
                                    'infer_centernet_int8_performance.sh'])
def test_int8_refusal_names_the_fp16_script_to_run(script, monkeypatch):
    """Typed as printed, the script the advice names runs (it said infer_centernet_fp16_*.sh)."""
    from centernet.export_cli import refusal_advice
    monkeypatch.setenv(SCRIPT_ENV, script)
    named = re.findall(r'scripts/\S+\.sh', refusal_advice('int8'))
    assert named == [f'scripts/{script.replace("int8", "fp16")}']
    assert all((ROOT / path).is_file() for path in named)
