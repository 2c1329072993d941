"""prepare.py against a local HTTP server on 127.0.0.1 that serves small generated stand-ins.

The stand-ins carry their own digests (passed to `prepare(files=...)`); the real recorded table
stays in centernet/prepare.py and is only checked for form here. No test touches the network
beyond 127.0.0.1, and every server thread is shut down by its fixture.
"""

import hashlib
import http.server
import io
import os
import re
import socket
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import prepare as prepare_script
from centernet import prepare as p
from centernet.errors import UserError
from common import run_main

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 5  # the client's socket timeout: a stuck test fails in seconds, not minutes


# ---- generated stand-ins for the three files -----------------------------------------------------

def zip_bytes(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def fake_jpeg(seed):
    # Unpacking never decodes the images: JPEG markers around some varied bytes are enough.
    return b'\xff\xd8\xff\xe0' + hashlib.sha256(str(seed).encode()).digest() * 8 + b'\xff\xd9'


CHECKPOINT_BYTES = hashlib.sha256(b'fake checkpoint').digest() * 2000      # 64000 bytes
CHECKPOINT_NAME = f'fake_centernet_r18-{hashlib.sha256(CHECKPOINT_BYTES).hexdigest()[:8]}.pth'
IMAGE_NAMES = ('000000000139.jpg', '000000000285.jpg', '000000000632.jpg')
IMAGES_ZIP = zip_bytes({f'val2017/{name}': fake_jpeg(name) for name in IMAGE_NAMES})
INSTANCES_JSON = b'{"images": [], "annotations": [], "categories": []}\n'
ANNOTATIONS_ZIP = zip_bytes({'annotations/instances_val2017.json': INSTANCES_JSON,
                             'annotations/captions_val2017.json': b'{"not": "needed"}\n'})


def recorded_like(name, url_path, data):
    """A RemoteFile for `data` with the kind of record the real table holds."""
    return p.RemoteFile(name=name, url_path=url_path, size=len(data),
                        digests={'md5': hashlib.md5(data).hexdigest(),
                                 'sha1': hashlib.sha1(data).hexdigest()})


FAKE_FILES = {
    # Like the real checkpoint: no size, only the sha256 prefix its OpenMMLab-style name carries.
    'checkpoint': p.RemoteFile(name=CHECKPOINT_NAME, url_path=f'ckpt/{CHECKPOINT_NAME}',
                               digests={'sha256': p.openmmlab_sha256_prefix(CHECKPOINT_NAME)}),
    'images': recorded_like('val2017.zip', 'zips/val2017.zip', IMAGES_ZIP),
    'annotations': recorded_like('annotations_trainval2017.zip',
                                 'annotations/annotations_trainval2017.zip', ANNOTATIONS_ZIP),
}
CHECKPOINT_URL_PATH = FAKE_FILES['checkpoint'].url_path
IMAGES_URL_PATH = FAKE_FILES['images'].url_path


# ---- the local server --------------------------------------------------------------------------

@dataclass
class ServerState:
    files: dict                                     # URL path -> body
    honour_range: bool = True                       # False: answer every Range request with 200
    cut_after: dict = field(default_factory=dict)   # URL path -> bytes sent before hanging up
    requests: list = field(default_factory=list)    # (URL path, Range header or None, status)
    url: str = ''


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """GET with `Range: bytes=N-` (206 / 416), or full bodies only when honour_range is False.

    HTTP/1.0: one request per connection, so a cut-off body is just a closed socket."""

    def do_GET(self):
        state = self.server.state
        path = self.path.lstrip('/')
        requested_range = self.headers.get('Range')
        body = state.files.get(path)
        start = 0
        if body is None:
            status = 404
        elif requested_range and state.honour_range:
            start = int(re.fullmatch(r'bytes=(\d+)-', requested_range).group(1))
            status = 206 if start < len(body) else 416
        else:
            status = 200
        state.requests.append((path, requested_range, status))
        if status in (404, 416):
            self.send_response(status)
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        payload = body[start:]
        self.send_response(status)
        if status == 206:
            self.send_header('Content-Range', f'bytes {start}-{len(body) - 1}/{len(body)}')
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        self.wfile.write(payload[:state.cut_after.get(path, len(payload))])

    def log_message(self, *args):
        pass  # keep the test output clean


@pytest.fixture
def server():
    state = ServerState(files={CHECKPOINT_URL_PATH: CHECKPOINT_BYTES,
                               IMAGES_URL_PATH: IMAGES_ZIP,
                               FAKE_FILES['annotations'].url_path: ANNOTATIONS_ZIP})
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), RangeHandler)
    httpd.state = state
    state.url = f'http://127.0.0.1:{httpd.server_address[1]}'
    thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05},
                              daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def closed_port():
    """A port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


# ---- helpers -----------------------------------------------------------------------------------

def run_prepare(tmp_path, url, *options):
    """prepare.py's argument parsing + centernet.prepare with the fake table; returns its log."""
    args = prepare_script.parse_args(['--checkpoint_dir', str(tmp_path / 'checkpoints'),
                                      '--datasets', str(tmp_path / 'data'),
                                      '--openmmlab_mirror', url, '--coco_mirror', url, *options])
    lines = []
    p.prepare(args, files=FAKE_FILES, log=lines.append, timeout=TIMEOUT_S)
    return lines


def checkpoint_path(tmp_path):
    return tmp_path / 'checkpoints' / CHECKPOINT_NAME


def paths_under(folder):
    return sorted(str(x.relative_to(folder)) for x in Path(folder).rglob('*'))


def assert_full_layout(tmp_path):
    data = tmp_path / 'data'
    assert checkpoint_path(tmp_path).read_bytes() == CHECKPOINT_BYTES
    assert (data / 'annotations/instances_val2017.json').read_bytes() == INSTANCES_JSON
    for name in IMAGE_NAMES:
        assert (data / 'images/val2017' / name).read_bytes() == fake_jpeg(name)
    # Only the needed member, no archives, no .part or temporary leftovers.
    assert paths_under(data) == sorted(
        ['annotations', 'annotations/instances_val2017.json', 'images', 'images/val2017']
        + [f'images/val2017/{name}' for name in IMAGE_NAMES])
    assert paths_under(tmp_path / 'checkpoints') == [CHECKPOINT_NAME]


# ---- the recorded table ------------------------------------------------------------------------

def test_recorded_table_has_the_published_values():
    checkpoint = p.RECORDED['checkpoint']
    assert checkpoint.url(p.OPENMMLAB_MIRROR) == (
        'https://download.openmmlab.com/mmdetection/v2.0/centernet/centernet_resnet18_140e_coco/'
        'centernet_resnet18_140e_coco_20210705_093630-bb5b3bf7.pth')
    assert checkpoint.digests == {'sha256': 'bb5b3bf7'}
    assert p.RECORDED['images'].url(p.COCO_MIRROR) == \
        'http://images.cocodataset.org/zips/val2017.zip'
    assert p.RECORDED['annotations'].url(p.COCO_MIRROR) == \
        'http://images.cocodataset.org/annotations/annotations_trainval2017.zip'
    for key in ('images', 'annotations'):
        remote = p.RECORDED[key]
        assert remote.size > 100_000_000
        assert re.fullmatch(r'[0-9a-f]{32}', remote.digests['md5'])
        assert re.fullmatch(r'[0-9a-f]{40}', remote.digests['sha1'])


# ---- downloads ---------------------------------------------------------------------------------

def test_fresh_download_verifies_and_unpacks_the_layout(tmp_path, server):
    log = run_prepare(tmp_path, server.url)
    assert_full_layout(tmp_path)
    assert sorted(path for path, _, _ in server.requests) == sorted(server.files)
    assert any(line.startswith(f'saved {checkpoint_path(tmp_path)} (sha256 ') for line in log)


def test_second_run_is_a_no_op(tmp_path, server):
    run_prepare(tmp_path, server.url)
    server.requests.clear()
    log = run_prepare(tmp_path, server.url)
    assert server.requests == []
    assert_full_layout(tmp_path)
    assert all(line.startswith('found ') for line in log), log
    assert any('images/val2017 (3 images)' in line for line in log)


def test_only_checkpoint_touches_nothing_else(tmp_path, server):
    run_prepare(tmp_path, server.url, '--only', 'checkpoint')
    assert [path for path, _, _ in server.requests] == [CHECKPOINT_URL_PATH]
    assert not (tmp_path / 'data').exists()


def test_resumes_a_cut_off_part_file(tmp_path, server):
    part = checkpoint_path(tmp_path).with_name(CHECKPOINT_NAME + '.part')
    part.parent.mkdir()
    part.write_bytes(CHECKPOINT_BYTES[:20000])
    log = run_prepare(tmp_path, server.url, '--only', 'checkpoint')
    assert server.requests == [(CHECKPOINT_URL_PATH, 'bytes=20000-', 206)]
    assert checkpoint_path(tmp_path).read_bytes() == CHECKPOINT_BYTES
    assert not part.exists()
    assert any('resuming' in line for line in log)


def test_restarts_when_the_server_ignores_range(tmp_path, server):
    server.honour_range = False
    part = checkpoint_path(tmp_path).with_name(CHECKPOINT_NAME + '.part')
    part.parent.mkdir()
    part.write_bytes(b'x' * 20000)  # appending the full body to this would fail the sha256
    log = run_prepare(tmp_path, server.url, '--only', 'checkpoint')
    assert server.requests == [(CHECKPOINT_URL_PATH, 'bytes=20000-', 200)]
    assert checkpoint_path(tmp_path).read_bytes() == CHECKPOINT_BYTES
    assert any('does not resume downloads: starting over' in line for line in log)


def test_complete_part_of_known_size_needs_no_request(tmp_path, server):
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'val2017.zip.part').write_bytes(IMAGES_ZIP)
    run_prepare(tmp_path, server.url, '--only', 'coco')
    assert IMAGES_URL_PATH not in [path for path, _, _ in server.requests]
    assert (data / 'images/val2017' / IMAGE_NAMES[0]).is_file()


def test_complete_part_of_unknown_size_is_checked_after_a_416(tmp_path, server):
    part = checkpoint_path(tmp_path).with_name(CHECKPOINT_NAME + '.part')
    part.parent.mkdir()
    part.write_bytes(CHECKPOINT_BYTES)
    run_prepare(tmp_path, server.url, '--only', 'checkpoint')
    assert server.requests == [(CHECKPOINT_URL_PATH, f'bytes={len(CHECKPOINT_BYTES)}-', 416)]
    assert checkpoint_path(tmp_path).read_bytes() == CHECKPOINT_BYTES


def test_corrupt_download_is_deleted_and_reported(tmp_path, server):
    corrupt = bytearray(IMAGES_ZIP)
    corrupt[len(corrupt) // 2] ^= 0xFF  # same size: only the digests can tell
    server.files[IMAGES_URL_PATH] = bytes(corrupt)
    with pytest.raises(UserError) as error:
        run_prepare(tmp_path, server.url, '--only', 'coco')
    message = str(error.value)
    assert '\n' not in message
    assert re.search(r'val2017\.zip sent a file that does not match the recorded one '
                     r'\(md5 [0-9a-f]{32}, recorded [0-9a-f]{32}\): deleted it', message), message
    data = tmp_path / 'data'
    assert not (data / 'val2017.zip').exists() and not (data / 'val2017.zip.part').exists()
    assert not (data / 'images').exists()


def test_bad_file_already_there_is_replaced(tmp_path, server):
    checkpoint_path(tmp_path).parent.mkdir()
    checkpoint_path(tmp_path).write_bytes(b'not the checkpoint')
    log = run_prepare(tmp_path, server.url, '--only', 'checkpoint')
    assert checkpoint_path(tmp_path).read_bytes() == CHECKPOINT_BYTES
    assert any('does not match the recorded file (sha256 ' in line and 'deleted it' in line
               for line in log)


def test_cut_off_download_is_a_clear_error_and_resumes_next_time(tmp_path, server):
    server.cut_after[CHECKPOINT_URL_PATH] = 10000
    with pytest.raises(UserError) as error:
        run_prepare(tmp_path, server.url, '--only', 'checkpoint')
    part = checkpoint_path(tmp_path).with_name(CHECKPOINT_NAME + '.part')
    assert str(error.value) == (
        f'download of {server.url}/{CHECKPOINT_URL_PATH} stopped after 10000 of 64000 bytes '
        f'(connection closed early); {part} is kept: run again to resume')
    assert part.stat().st_size == 10000 and not checkpoint_path(tmp_path).exists()

    server.cut_after.clear()
    run_prepare(tmp_path, server.url, '--only', 'checkpoint')
    assert server.requests[-1] == (CHECKPOINT_URL_PATH, 'bytes=10000-', 206)
    assert checkpoint_path(tmp_path).read_bytes() == CHECKPOINT_BYTES


def test_disk_full_during_a_download_keeps_the_part_for_resuming(tmp_path, server, monkeypatch):
    import builtins
    import errno

    class FullDisk:
        """A .part file on a disk that fills up after 10000 bytes."""

        def __init__(self, file):
            self.file = file

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, block):
            if self.file.tell() + len(block) > 10000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.file.write(block)

    def open_on_a_full_disk(path, mode='r', *args, **kwargs):
        file = builtins.open(path, mode, *args, **kwargs)
        return FullDisk(file) if str(path).endswith('.part') else file

    monkeypatch.setattr(p, 'open', open_on_a_full_disk, raising=False)
    with pytest.raises(UserError) as error:
        run_prepare(tmp_path, server.url, '--only', 'checkpoint')
    part = checkpoint_path(tmp_path).with_name(CHECKPOINT_NAME + '.part')
    assert str(error.value) == (f'cannot write {part}: no space left on the device: free some '
                                f'space there or write elsewhere ({part.name} is kept: run again '
                                'to resume)')
    assert part.is_file() and not checkpoint_path(tmp_path).exists()
    monkeypatch.undo()
    run_prepare(tmp_path, server.url, '--only', 'checkpoint')
    assert checkpoint_path(tmp_path).read_bytes() == CHECKPOINT_BYTES


def test_missing_file_on_the_server_names_the_url(tmp_path, server):
    del server.files[CHECKPOINT_URL_PATH]
    with pytest.raises(UserError, match=r'ckpt/fake_centernet_r18-[0-9a-f]{8}\.pth answered '
                                        r'HTTP 404 .*download the file manually to '):
        run_prepare(tmp_path, server.url, '--only', 'checkpoint')


def test_offline_is_one_clear_line(tmp_path, capsys):
    url = f'http://127.0.0.1:{closed_port()}'
    argv = ['--only', 'checkpoint', '--checkpoint_dir', str(tmp_path), '--openmmlab_mirror', url]
    with pytest.raises(SystemExit) as exit_info:
        run_main(prepare_script.main, argv)
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    target = tmp_path / p.CHECKPOINT_NAME
    assert re.fullmatch(
        rf'error: cannot reach {re.escape(url)}/mmdetection/\S+-bb5b3bf7\.pth '
        r'\([^)]*refused[^)]*\): '
        rf'check the network, or download the file manually to {re.escape(str(target))} '
        r'and run again\n', stderr), stderr
    assert os.listdir(tmp_path) == []


def test_coco_without_a_dataset_folder_says_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.delenv('DATASETS_DIR', raising=False)
    args = prepare_script.parse_args(['--only', 'coco'])
    with pytest.raises(UserError, match='pass --datasets DIR or set DATASETS_DIR'):
        p.prepare(args, files=FAKE_FILES, log=lambda line: None, timeout=TIMEOUT_S)


# ---- unpacking ---------------------------------------------------------------------------------

@pytest.mark.parametrize('failure', [OSError(28, 'No space left on device'), KeyboardInterrupt()],
                         ids=['disk-full', 'ctrl-c'])
def test_unpack_is_all_or_nothing(tmp_path, server, monkeypatch, failure):
    extract = zipfile.ZipFile.extract
    calls = []

    def extract_then_fail(self, member, path=None, pwd=None):
        calls.append(member)
        if len(calls) == 2:  # one image is already out when it fails
            raise failure
        return extract(self, member, path, pwd)

    monkeypatch.setattr(zipfile.ZipFile, 'extract', extract_then_fail)
    expected = UserError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as error:
        run_prepare(tmp_path, server.url, '--only', 'coco')
    if expected is UserError:
        assert str(error.value).startswith('cannot unpack ')
        assert 'No space left on device' in str(error.value)
    data = tmp_path / 'data'
    assert os.listdir(data / 'images') == []          # no half folder, no temporary folder
    assert (data / 'val2017.zip').is_file()           # verified archive kept for the next run

    monkeypatch.setattr(zipfile.ZipFile, 'extract', extract)
    server.requests.clear()
    run_prepare(tmp_path, server.url, '--only', 'coco')
    assert server.requests == []
    assert sorted(os.listdir(data / 'images/val2017')) == sorted(IMAGE_NAMES)


def test_keep_archives_keeps_the_verified_zips(tmp_path, server):
    run_prepare(tmp_path, server.url, '--only', 'coco', '--keep_archives')
    data = tmp_path / 'data'
    assert (data / 'val2017.zip').read_bytes() == IMAGES_ZIP
    assert (data / 'annotations_trainval2017.zip').read_bytes() == ANNOTATIONS_ZIP


# ---- scripts/prepare.sh ------------------------------------------------------------------------

def run_wrapper(env_overrides, *options):
    env = {k: v for k, v in os.environ.items() if k not in ('DATASETS_DIR', 'OPENMMLAB_MIRROR')}
    env.update(PYTHON=sys.executable, **env_overrides)
    return subprocess.run(['bash', str(ROOT / 'scripts/prepare.sh'), *options], env=env,
                          capture_output=True, text=True, timeout=60)


def test_wrapper_needs_datasets_dir():
    result = run_wrapper({})
    assert result.returncode != 0 and 'set DATASETS_DIR' in result.stderr


def test_wrapper_passes_datasets_dir_and_mirror_environment(tmp_path):
    url = f'http://127.0.0.1:{closed_port()}'
    result = run_wrapper({'DATASETS_DIR': str(tmp_path / 'data'), 'COCO_MIRROR': url},
                         '--only', 'coco')
    assert result.returncode == 2
    assert result.stderr == (
        f'error: cannot reach {url}/annotations/annotations_trainval2017.zip '
        '([Errno 111] Connection refused): check the network, or download the file manually to '
        f'{tmp_path / "data" / "annotations_trainval2017.zip"} and run again\n')
