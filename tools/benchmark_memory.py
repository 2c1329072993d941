#!/usr/bin/env python3
"""Peak memory per input pixel of inference.py: COCO evaluation (full-size canvases) and the
picture demo, per backend. The figures behind the kit's memory estimates (Backend's
host_bytes_per_pixel, the demo's drawing cost, image_header's decode table).

    python3 tools/benchmark_memory.py [--sizes 2000x1500 4000x3000] [--backends onnxruntime torch]
    python3 tools/benchmark_memory.py --int8 [--int8_sizes 1000x750 2000x1500]

--int8 measures INT8 calibration instead (export.py --precision int8 on a folder of one
picture, calibrated on it; with --skip-check the calibration alone, without it the precision
gate's run too): the figures behind int8_quantize's CALIBRATION_BYTES_PER_PIXEL and
GATE_BYTES_PER_PIXEL.

Each run is a fresh inference.py process on a COCO-layout folder of two tiny images and one large
one; its peak is the process's own VmHWM (/proc/self/status), read at exit. Not
getrusage(RUSAGE_CHILDREN): a child started by vfork counts its parent's peak as its own, so a
test or tool that had made a large image would be charged for it. Bytes per pixel are the slope
between two sizes, which takes out the start-up (torch, ONNX Runtime, the model).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from centernet.report import format_table  # noqa: E402

# Runs a script as __main__ and writes the process's VmHWM (bytes) to the file $PEAK_FILE at exit.
PEAK_WRAPPER = """
import atexit, os, runpy, sys
def report():
    with open('/proc/self/status') as status:
        peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith('VmHWM'))
    with open(os.environ['PEAK_FILE'], 'w') as out:
        out.write(str(peak))
atexit.register(report)
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def peak_of(argv, folder, timeout=3600):
    """(subprocess.CompletedProcess, peak bytes) of `python argv...` in a fresh process; the
    peak file goes to `folder`. Also what tests/test_bad_inputs.py measures with."""
    peak_file = Path(folder) / 'peak'
    done = subprocess.run([sys.executable, '-c', PEAK_WRAPPER, *argv], capture_output=True,
                          text=True, env={**os.environ, 'PEAK_FILE': str(peak_file)},
                          timeout=timeout)
    return done, int(peak_file.read_text())


def make_set(folder, width, height):
    """A COCO-layout folder with a 64x48, a 48x64 and a width x height scene, made in a child
    process so that this one stays small."""
    code = ('import sys; sys.path.insert(0, sys.argv[1]); '
            'from centernet.synthetic import write_coco_dataset; '
            'write_coco_dataset(sys.argv[2], ((64, 48), (48, 64), (int(sys.argv[3]), '
            'int(sys.argv[4]))), seed=9)')
    subprocess.run([sys.executable, '-c', code, str(ROOT), str(folder), str(width), str(height)],
                   check=True)


def header_of(path):
    from centernet.image_header import read_header
    with open(path, 'rb') as file:
        return read_header(file)


def parse_size(text):
    width, height = (int(v) for v in text.lower().split('x'))
    return width, height


def measure_int8(args):
    """Peak of export.py --precision int8 calibrating on one picture, per pixel (the slope)."""
    from centernet.image_header import header_of_bytes
    rows, record = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for width, height in args.int8_sizes:
            make_set(tmp / f'set{width}x{height}', width, height)
        for method, gated in [(m, False) for m in args.int8_methods] + [('minmax', True)]:
            peaks = []
            for width, height in args.int8_sizes:
                # the large picture alone: calibration and the gate read only it
                folder = tmp / f'calib{width}x{height}'
                folder.mkdir(exist_ok=True)
                large = max((tmp / f'set{width}x{height}' / 'images/val2017').iterdir(),
                            key=lambda p: p.stat().st_size)
                (folder / large.name).write_bytes(large.read_bytes())
                done, peak = peak_of([str(ROOT / 'export.py'), '--weight', args.weight,
                                      '--output', str(tmp / 'int8.onnx'), '--precision', 'int8',
                                      '--calib', str(folder), '--calib_images', '1',
                                      '--calib_method', method,
                                      *([] if gated else ['--skip-check'])], tmp)
                if done.returncode not in (0, 2):  # 2: the gate refused; its peak still counts
                    sys.exit(f'int8 {width}x{height} failed: {done.stderr}')
                peaks.append((width * height, peak, large))
            (small_pixels, small_peak, _), (large_pixels, large_peak, large) = peaks
            slope = (large_peak - small_peak) / (large_pixels - small_pixels)
            after = slope - header_of_bytes(large.read_bytes()).decode_bytes_per_pixel
            name = f'{method}: calibration' + (' and gate' if gated else ' (--skip-check)')
            record[name] = dict(bytes_per_pixel=slope, after_decode=after,
                                peaks=[p[:2] for p in peaks])
            rows.append([name] + [f'{p[0] / 1e6:.2f} MP: {p[1] / 2**20:.0f} MiB' for p in peaks]
                        + [f'{slope:.0f}', f'{after:.0f}'])
    print(format_table(['export.py --precision int8', 'smaller', 'larger', 'bytes/pixel',
                        'after decode'], rows,
                       title='peak memory (VmHWM), one calibration picture; bytes/pixel = slope '
                             'between the two sizes'))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1) + '\n')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', nargs=2, type=parse_size, default=[(2000, 1500), (4000, 3000)],
                        metavar='WxH', help='COCO mode: the large image of each run (default '
                                            '2000x1500 4000x3000)')
    parser.add_argument('--picture_sizes', nargs=2, type=parse_size,
                        default=[(4000, 3000), (8000, 6000)], metavar='WxH',
                        help='the demo: larger, as its network runs on the shrunk picture, whose '
                             'memory hides a smaller picture\'s (default 4000x3000 8000x6000)')
    parser.add_argument('--backends', nargs='+', default=['onnxruntime', 'torch'],
                        choices=('onnxruntime', 'torch'))
    parser.add_argument('--weight',
                        default=str(ROOT / 'tests/fixtures/standin/standin_centernet.pth'))
    parser.add_argument('--json', help='also write the figures here')
    parser.add_argument('--int8', action='store_true',
                        help='measure INT8 calibration and its gate instead (module docstring)')
    parser.add_argument('--int8_sizes', nargs=2, type=parse_size,
                        default=[(1000, 750), (2000, 1500)], metavar='WxH',
                        help='--int8: the calibration picture of each run (default 1000x750 '
                             '2000x1500)')
    parser.add_argument('--int8_methods', nargs='+', default=['minmax'],
                        choices=('minmax', 'entropy', 'percentile'),
                        help='--int8: the calibration methods to measure (default minmax)')
    args = parser.parse_args()
    if args.int8:
        return measure_int8(args)
    rows, record = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx = tmp / 'model.onnx'
        subprocess.run([sys.executable, str(ROOT / 'export.py'), '--weight', args.weight,
                        '--output', str(onnx), '--skip-check'], check=True, capture_output=True)
        for width, height in set(args.sizes + args.picture_sizes):
            make_set(tmp / f'set{width}x{height}', width, height)
        models = {'onnxruntime': ['--engine', str(onnx)],
                  'torch': ['--weight', args.weight, '--device', 'cpu']}
        for backend in args.backends:
            for mode in ('coco', 'pictures'):
                peaks, sizes = [], args.sizes if mode == 'coco' else args.picture_sizes
                for width, height in sizes:
                    folder = tmp / f'set{width}x{height}'
                    task = (['--datasets', str(folder), '--record', str(tmp / 'r.json')]
                            if mode == 'coco' else
                            ['--images', str(folder / 'images/val2017'), '--out', str(tmp / 'out')])
                    done, peak = peak_of([str(ROOT / 'inference.py'), *models[backend], *task,
                                          '--quiet', '--workers', '1'], tmp)
                    if done.returncode != 0:
                        sys.exit(f'{backend} {mode} {width}x{height} failed: {done.stderr}')
                    peaks.append((width * height, peak))
                (small_pixels, small_peak), (large_pixels, large_peak) = peaks
                slope = (large_peak - small_peak) / (large_pixels - small_pixels)
                # What follows the decode: the slope less the file and its decode (JPEG).
                largest = max((folder / 'images/val2017').iterdir(), key=lambda p: p.stat().st_size)
                after = (slope - largest.stat().st_size / large_pixels
                         - header_of(largest).decode_bytes_per_pixel)
                record[f'{backend}/{mode}'] = dict(bytes_per_pixel=slope, after_decode=after,
                                                   peaks=peaks)
                rows.append([backend, mode] + [f'{w}x{h}: {peak / 2**20:.0f} MiB'
                                               for (w, h), (_, peak) in zip(sizes, peaks)]
                            + [f'{slope:.1f}', f'{after:.1f}'])
    print(format_table(['backend', 'mode', 'smaller', 'larger', 'bytes/pixel', 'after decode'],
                       rows, title='peak memory (VmHWM) of inference.py; bytes/pixel = slope '
                                   'between the two sizes; after decode = less the JPEG file '
                                   'and its decode'))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1) + '\n')


if __name__ == '__main__':
    main()
