#!/usr/bin/env python3
"""Every graph the kit writes, built by the real TensorRT for RTX builder on this machine.

    python tools/rtx_build_table.py [--weight CKPT] [--json results/rtx_build_table.json]

Exports (in a temp folder, seeded weights unless --weight) the FP32, FP16, INT8 (tensorrt
flavour, calibrated on generated scenes), static FP32/FP16 and --end2end FP32/FP16 graphs, and the
INT8 CPU-flavour graph and an FP16 graph with one convolution weight left FP32 (both must be
refused), builds each with build_engine() --runtime tensorrt-rtx (no GPU needed), and prints
graph x result x build seconds x engine MiB; the seconds are the builder's own (build_seconds in
the sidecar: parse + build, not the export). docs/tensorrt.md quotes its output.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from centernet import onnx_export as ox  # noqa: E402
from centernet.config import load_spec  # noqa: E402
from centernet.engine.build import build_engine  # noqa: E402
from centernet.engine.profile import Profile  # noqa: E402
from centernet.errors import UserError  # noqa: E402
from centernet.fileio import write_json  # noqa: E402
from centernet.report import environment, format_table  # noqa: E402

CONFIG = ROOT / 'centernet_r18_8xb16-crop512-140e_coco.py'
STATIC = (32, 512, 672)


def quiet(*args, **kwargs):
    pass


def make_graphs(folder, weight):
    """{graph name: (onnx path, precision)}: the exports export.py makes, by its functions."""
    import onnx
    from onnx import TensorProto, numpy_helper
    from centernet.checkpoint import load_model
    from centernet.int8_quantize import quantize_int8
    from centernet.model import build_model
    from centernet.standin_scenes import write_split
    from centernet.synthetic import seeded_state_dict
    spec = load_spec(CONFIG)
    if weight:
        model, classes = load_model(spec, weight)
    else:
        model, classes = build_model(spec), [f'class{i}' for i in range(spec.num_classes)]
        model.load_state_dict(seeded_state_dict(model, 0))
    model.eval()
    fp32 = ox.export_fp32(model, folder / 'centernet.onnx', classes=classes, log=quiet)
    fp16 = ox.convert_fp16(fp32, folder / 'centernet_fp16.onnx', log=quiet)
    calib = write_split(folder / 'calib', 'train', 16)
    int8 = {flavour: folder / f'centernet_int8_{flavour}.onnx' for flavour in ('tensorrt', 'cpu')}
    for flavour, path in int8.items():
        quantize_int8(fp32, path, calib, calib_images=16, flavour=flavour, log=quiet)
    static = ox.export_fp32(model, folder / 'static.onnx', static_shape=STATIC, classes=classes,
                            log=quiet)
    end2end = ox.export_fp32(model, folder / 'e2e.onnx', end2end=True, classes=classes,
                             log=quiet)
    mixed = onnx.load(str(fp16))
    weights = {t.name: t for t in mixed.graph.initializer}
    conv = next(n for n in mixed.graph.node if n.op_type == 'Conv'
                and weights[n.input[1]].data_type == TensorProto.FLOAT16)
    weight_tensor = weights[conv.input[1]]
    weight_tensor.CopyFrom(numpy_helper.from_array(
        numpy_helper.to_array(weight_tensor).astype(np.float32), weight_tensor.name))
    onnx.save(mixed, str(folder / 'mixed_fp16.onnx'))
    return {
        'FP32': (fp32, 'fp32'), 'FP16': (fp16, 'fp16'), 'INT8, tensorrt flavour':
        (int8['tensorrt'], 'int8'),
        f'static {"x".join(map(str, STATIC))} FP32': (static, 'fp32'),
        f'static {"x".join(map(str, STATIC))} FP16':
        (ox.convert_fp16(static, ox.fp16_sibling(static), log=quiet), 'fp16'),
        '--end2end FP32': (end2end, 'fp32'),
        '--end2end FP16': (ox.convert_fp16(end2end, ox.fp16_sibling(end2end), log=quiet), 'fp16'),
        'INT8, cpu flavour': (int8['cpu'], 'int8'),
        f'FP16 with {conv.name} weight left FP32': (folder / 'mixed_fp16.onnx', 'fp16'),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--weight', help='mmdet checkpoint (default: seeded weights)')
    parser.add_argument('--json', default='results/rtx_build_table.json')
    args = parser.parse_args()
    rows, records = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for graph, (path, precision) in make_graphs(folder, args.weight).items():
            engine = folder / f'{len(rows)}.engine'
            try:
                record = build_engine(path, engine, precision, Profile(), runtime='tensorrt-rtx',
                                      check=False, log=quiet)
            except UserError as exc:
                rows.append([graph, f'refused: {str(exc).replace(str(folder) + "/", "")[:110]}',
                             '-', '-'])
                records[graph] = dict(result='refused', error=str(exc))
                continue
            size = engine.stat().st_size / 2**20
            rows.append([graph, 'built', f'{record["build_seconds"]:.1f}', f'{size:.1f}'])
            records[graph] = dict(result='built', build_seconds=record['build_seconds'],
                                  engine_mib=round(size, 1), targets=record['targets'],
                                  runtime_version=record['runtime_version'])
    print(format_table(['graph', 'result', 'build s', 'engine MiB'], rows,
                       title='TensorRT for RTX, CPU-only ahead-of-time builds (no GPU)'))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, dict(environment=environment(), builds=records), indent=1)
    print(f'record: {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
