"""Atomic output files: a reader (or a Ctrl-C) never sees half a file."""

import contextlib
import json
import os
import tempfile
from pathlib import Path

from .errors import UserError


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    On any exception (KeyboardInterrupt included) the temporary file is removed and `path` is left
    as it was.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path('.')
    if not folder.is_dir():
        raise UserError(f'output folder {folder} does not exist: create it or choose another path')
    if not os.access(folder, os.W_OK):
        raise UserError(f'output folder {folder} is not writable: choose another path')
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=folder)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path, obj, indent=None):
    """Write `obj` as JSON to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            json.dump(obj, f, indent=indent)
            f.write('\n')
