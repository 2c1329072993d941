"""Terminal tables and run records."""

import os
import platform
import re
import sys

# Numbers already formatted by the caller ('0.860', '812.3', a range '790-830'): right-aligned too.
_FORMATTED_NUMBER = re.compile(r'\d[\d.]*(-\d[\d.]*)?')


def format_table(headers, rows, title=None):
    """Plain aligned table; numbers are right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
              for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None
                   or isinstance(row[i], str) and _FORMATTED_NUMBER.fullmatch(row[i])
                   for row in rows) for i in range(len(headers))]

    def line(values):
        return '  '.join(v.rjust(w) if n else v.ljust(w)
                         for v, w, n in zip(values, widths, numeric)).rstrip()

    out = [title] if title else []
    out += [line([str(h) for h in headers]), line(['-' * w for w in widths])]
    out += [line(r) for r in cells]
    return '\n'.join(out)


def _cell(value):
    if value is None:
        return '-'
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f'{value:.3e}'
        return f'{value:.4f}' if abs(value) < 10 else f'{value:.1f}'
    return str(value)


def printable(path):
    """A path as text that any terminal encoding takes: a file name's bytes that are not UTF-8
    appear as \\xNN escapes instead of failing the print."""
    return os.fsencode(path).decode('utf-8', 'backslashreplace')


def environment():
    """Versions for run records: a library the run imported gives its own __version__; one it
    did not is read from its installed distribution, not imported (onnx, TensorRT and the
    evaluators took 1.5 s to import for their version strings alone, each run)."""
    from importlib import metadata
    import numpy
    import torch
    env = dict(python=sys.version.split()[0], platform=platform.platform(),
               torch=torch.__version__, numpy=numpy.__version__)
    distributions = None
    for module in ('onnx', 'onnxruntime', 'cv2', 'pycocotools', 'faster_coco_eval', 'tensorrt',
                   'tensorrt_rtx'):
        if module in sys.modules:
            version = getattr(sys.modules[module], '__version__', None)
        else:
            distributions = distributions or metadata.packages_distributions()
            try:
                version = metadata.version(distributions.get(module, ())[0])
            except (IndexError, metadata.PackageNotFoundError):  # not installed
                version = None
        if version is not None:
            env[module] = version
    if torch.cuda.is_available():
        env['gpu'] = torch.cuda.get_device_name(0)
        env['cuda'] = torch.version.cuda
    return env
