"""Atomic output files: a reader, a Ctrl-C, a full disk or a power cut never leaves half a file.

Every file the kit writes (ONNX, engines, JSON records, detections, pictures) goes through
`atomic_path` (a folder that is only of use complete, such as generated scenes, `atomic_folder`):
the data goes to a temporary file beside the target, which is flushed to the disk (fsync) and
only then renamed over the target; the folder is fsynced after the rename so the new name
survives a crash too. A write the machine refuses (disk full, read-only, I/O error) becomes a
UserError that names the path; the temporary file is removed and the target is left as it was.
"""

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path

from .errors import UserError

# Errors of the storage, not of the program: each says what to do about it.
_WRITE_FAILURES = {
    errno.ENOSPC: 'no space left on the device: free some space there or write elsewhere',
    errno.EDQUOT: 'disk quota exceeded: free some space there or write elsewhere',
    errno.EFBIG: 'file too large for this file system or its limits: write elsewhere',
    errno.EROFS: 'the file system is read-only: choose a writable folder',
    errno.EACCES: 'permission denied: choose a folder you can write to',
    errno.EPERM: 'operation not permitted: choose a folder you can write to',
    errno.EIO: 'input/output error: the disk may be failing; check it (dmesg) or write elsewhere',
}
_NEW_FILE_MODE = 0o666  # what open(path, 'w') asks for; the kernel takes the umask off


def write_failure(path, exc, outcome='nothing was written there'):
    """The UserError for an OSError of the storage while writing `path`, else None."""
    advice = _WRITE_FAILURES.get(exc.errno)
    if advice is None:
        return None
    return UserError(f'cannot write {path}: {advice} ({outcome})')


def _create_beside(path):
    """A new, empty temporary file next to `path`, with the mode a new file gets (umask applied).

    tempfile.mkstemp would make it 0600 whatever the umask, and the rename would keep that.
    """
    for _ in range(100):
        tmp = path.with_name(f'.{path.name}.{secrets.token_hex(4)}.tmp')
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _NEW_FILE_MODE))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, 'no free temporary name', str(path))


def _fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder):
    """Make a rename in `folder` durable. Best effort: the file is already in place, and some file
    systems cannot fsync a folder at all (EINVAL)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_output_folder(path):
    """The folder `path` is to be written into exists and is writable, else a UserError: what a
    long run checks before it starts (export.py before its tracing), and every write again."""
    folder = Path(path).parent if str(Path(path).parent) else Path('.')
    if not folder.is_dir():
        raise UserError(f'output folder {folder} does not exist: create it or choose another path')
    if not os.access(folder, os.W_OK):
        raise UserError(f'output folder {folder} is not writable: choose another path')


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; move it to `path` only if the block succeeds.

    On success the temporary file is fsynced, renamed over `path` and the folder fsynced. On any
    exception (KeyboardInterrupt and SIGTERM included) the temporary file is removed and `path` is
    left as it was; an OSError of the storage (disk full, read-only, I/O error) becomes a
    UserError naming `path`.
    """
    path = Path(path)
    check_output_folder(path)
    try:
        tmp = _create_beside(path)
    except OSError as exc:
        raise (write_failure(path, exc) or exc) from None
    try:
        yield tmp
        move_into_place(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and write_failure(path, exc):
            raise write_failure(path, exc) from None
        raise


def move_into_place(done, path):
    """Rename the finished file `done` over `path` durably: its data reaches the disk first (a
    crash then leaves the old file or the new one, never an empty one), the rename after."""
    _fsync_file(done)
    os.replace(done, path)
    _fsync_folder(Path(path).parent)


def sha256_of(path, chunk=1 << 20):
    """The file's sha256, hex: what export reports and engine sidecars record of their inputs."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_json(path, obj, indent=None):
    """Write `obj` as JSON to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            json.dump(obj, f, indent=indent)
            f.write('\n')


@contextlib.contextmanager
def atomic_folder(path):
    """Yield a new temporary folder beside `path`; it becomes `path` only if the block succeeds.

    On success every file in it is fsynced, the folder renamed to `path` and its parent fsynced:
    whatever has the name `path` is complete. On any exception (Ctrl-C and SIGTERM included) the
    temporary folder is removed. If `path` appeared meanwhile (another run made it), that one is
    kept and the new copy dropped. A storage error becomes a UserError naming `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            tmp = path.with_name(f'.{path.name}.{secrets.token_hex(4)}.tmp')
            try:
                os.mkdir(tmp)  # mode 0777 less the umask, as a folder made by hand
                break
            except FileExistsError:
                continue
    except OSError as exc:
        raise (write_failure(path, exc) or exc) from None
    try:
        yield tmp
        for folder, _, files in os.walk(tmp):
            for name in files:
                _fsync_file(os.path.join(folder, name))
            _fsync_folder(folder)
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.is_dir():
                raise
        _fsync_folder(path.parent)
    except OSError as exc:
        if write_failure(path, exc):
            raise write_failure(path, exc) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing left there after the rename


class StagedFiles:
    """Files that appear in `folder` together, when the block ends well, or not at all.

    Inside the block, `write_bytes(name, data)` and `write_json(name, obj)` write into a new
    temporary folder inside `folder` (same file system: the moves are renames). When the block
    succeeds each file is moved into `folder` (move_into_place: fsync, rename, folder fsync) in
    the order it was written, so the last one written (an index of the others, such as the demo's
    detections.json) appears last. On any exception (Ctrl-C and SIGTERM included) the temporary
    folder is removed, and so is every file already moved in by this block (a stop between the
    renames, a matter of milliseconds); files of an earlier run that it had replaced are not
    brought back. A storage error becomes a UserError naming the file's final path."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.names, self.moved, self.stage = [], [], None

    def __enter__(self):
        for _ in range(100):
            stage = self.folder / f'.staging.{secrets.token_hex(4)}.tmp'
            try:
                os.mkdir(stage)  # mode 0777 less the umask
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise (write_failure(self.folder, exc) or exc) from None
        self.stage = stage
        return self

    def _written(self, name, write):
        if name in self.names:
            raise ValueError(f'{name} written twice')
        try:
            write(self.stage / name)
        except OSError as exc:
            raise (write_failure(self.folder / name, exc) or exc) from None
        self.names.append(name)
        return self.folder / name

    def write_bytes(self, name, data):
        """Write `data` as the file `name`; returns the path it will have in `folder`."""
        return self._written(name, lambda path: path.write_bytes(data))

    def write_json(self, name, obj, indent=None):
        def write(path):
            with open(path, 'w') as f:
                json.dump(obj, f, indent=indent)
                f.write('\n')
        return self._written(name, write)

    def __exit__(self, kind, exc, traceback):
        try:
            if kind is None:
                for name in self.names:
                    target = self.folder / name
                    try:
                        move_into_place(self.stage / name, target)
                    except OSError as error:
                        raise (write_failure(target, error) or error) from None
                    self.moved.append(target)
        except BaseException:
            kind = True
            raise
        finally:
            if kind is not None:
                for target in self.moved:
                    with contextlib.suppress(OSError):
                        os.unlink(target)
            shutil.rmtree(self.stage, ignore_errors=True)
