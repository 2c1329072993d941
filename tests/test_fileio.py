"""Atomic writes: the umask's mode, data flushed before the rename, storage errors as UserError."""

import errno
import os
import stat

import pytest

from centernet import fileio
from centernet.errors import UserError
from centernet.fileio import atomic_path, write_json


@pytest.fixture
def umask():
    """Set the process umask for one test, restore it after."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize('mask', [0o022, 0o077, 0o002])
def test_mode_is_what_open_gives_under_the_umask(tmp_path, umask, mask):
    umask(mask)
    write_json(tmp_path / 'kit.json', {'a': 1})
    with open(tmp_path / 'plain.json', 'w') as f:  # the independent truth: open() itself
        f.write('{}')
    kit, plain = (stat.S_IMODE(os.stat(tmp_path / n).st_mode) for n in ('kit.json', 'plain.json'))
    assert kit == plain == 0o666 & ~mask


def test_file_is_fsynced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(('fsync', stat.S_ISDIR(os.fstat(fd).st_mode)))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(('replace', os.path.basename(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, 'fsync', fsync)
    monkeypatch.setattr(os, 'replace', replace)
    write_json(tmp_path / 'r.json', [1])
    assert events == [('fsync', False), ('replace', 'r.json'), ('fsync', True)]


@pytest.mark.parametrize('code, advice', [
    (errno.ENOSPC, 'no space left on the device: free some space there or write elsewhere'),
    (errno.EIO, 'input/output error: the disk may be failing'),
    (errno.EDQUOT, 'disk quota exceeded'),
])
def test_storage_error_at_flush_is_a_user_error_and_leaves_nothing(tmp_path, monkeypatch,
                                                                   code, advice):
    target = tmp_path / 'r.json'
    write_json(target, {'old': True})

    def fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, 'fsync', fsync)
    with pytest.raises(UserError) as error:
        write_json(target, {'new': True})
    assert str(error.value).startswith(f'cannot write {target}: {advice}')
    assert str(error.value).endswith('(nothing was written there)')
    assert target.read_text() == '{"old": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ['r.json']


def test_read_only_file_system_at_create(tmp_path, monkeypatch):
    real_open = os.open

    def read_only_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, 'open', read_only_open)
    with pytest.raises(UserError, match='the file system is read-only: choose a writable folder'):
        write_json(tmp_path / 'r.json', {})
    assert list(tmp_path.iterdir()) == []


def test_other_errors_in_the_block_pass_through(tmp_path):
    """Only storage errors are reworded; a program error stays what it is, and still cleans up."""
    with pytest.raises(ConnectionResetError):
        with atomic_path(tmp_path / 'x.bin'):
            raise ConnectionResetError(errno.ECONNRESET, 'reset')
    assert list(tmp_path.iterdir()) == []


def test_failure_messages_cover_the_storage_errors():
    for code in (errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT, errno.EFBIG, errno.EACCES):
        error = fileio.write_failure('out.json', OSError(code, os.strerror(code)))
        assert str(error).startswith('cannot write out.json: ')
    assert fileio.write_failure('out.json', OSError(errno.ECONNRESET, 'reset')) is None
