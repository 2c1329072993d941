"""What the top-level scripts share: error handling at the edge, and argument helpers.

The scripts (export.py, build_engine.py, inference.py, prepare.py) are thin: they parse
arguments and call into the `centernet` package. `run_main` turns the package's UserError into one
line on stderr and exit code 2, and Ctrl-C into exit code 130, without a traceback.
"""

import argparse
import os
import sys

# Make `centernet` and `coco_labels` importable however the script is started.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from centernet.errors import EXIT_USER_ERROR, UserError  # noqa: E402

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              'centernet_r18_8xb16-crop512-140e_coco.py')


def run_main(main, argv=None):
    """Run `main(argv)`; exit 0, 2 (UserError: one line on stderr) or 130 (interrupted)."""
    try:
        code = main(argv)
    except UserError as exc:
        print(f'error: {exc}', file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print('interrupted: no partial output was written', file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def str2bool(value):
    """argparse type for flags given as `--flag`, `--flag True` or `--flag false` (reference CLI)."""
    if isinstance(value, bool):
        return value
    lowered = value.lower()
    if lowered in ('1', 'true', 'yes', 'y', 'on'):
        return True
    if lowered in ('0', 'false', 'no', 'n', 'off'):
        return False
    raise argparse.ArgumentTypeError(f'expected true or false, got {value!r}')


def add_bool_flag(parser, name, help_text):
    """`--name` alone means True; `--name True/False` also accepted."""
    parser.add_argument(name, nargs='?', const=True, default=False, type=str2bool, help=help_text)


def parse_shape(text):
    """'32x672x672' -> (32, 672, 672)."""
    try:
        parts = tuple(int(p) for p in text.lower().split('x'))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f'expected BxHxW such as 1x512x672, got {text!r}')
    return parts
