"""prepare.py's work: fetch the checkpoint and COCO val2017, verify them, unpack them in place.

    RemoteFile         one file to fetch: name, URL path under a mirror, recorded size and digests
    RECORDED           the three files this kit needs, with the values published for them
    fetch              a verified local copy of a RemoteFile (found, resumed or downloaded)
    download_to_part   HTTP GET into NAME.part, resuming with a Range request where possible
    unpack_member / unpack_folder   zip -> final path, through a temporary name, then a rename

Nothing here imports torch or cv2: preparing data must work before the heavy packages do.
A file only ever gets its final name after it was verified (size and digests); a folder only after
it was fully extracted. So whatever has its final name is complete, and a second run that finds it
does nothing.
"""

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .errors import UserError
from .fileio import atomic_path, move_into_place, write_failure

OPENMMLAB_MIRROR = 'https://download.openmmlab.com'
COCO_MIRROR = 'http://images.cocodataset.org'
# Environment variables that replace the mirrors above (the command-line options win over them).
OPENMMLAB_MIRROR_ENV = 'OPENMMLAB_MIRROR'
COCO_MIRROR_ENV = 'COCO_MIRROR'

# The layout centernet/dataset.py reads (not imported from there: it pulls in torch and cv2).
ANNOTATION_MEMBER = 'annotations/instances_val2017.json'
IMAGE_FOLDER = 'images/val2017'
IMAGE_FOLDER_IN_ZIP = 'val2017'
ALSO_ACCEPTED_IMAGE_FOLDER = 'val2017'  # dataset.py also takes COCO's own layout

NETWORK_TIMEOUT_S = 60
CHUNK_BYTES = 1 << 20
_OPENMMLAB_SHA256_PREFIX = re.compile(r'-([0-9a-f]{8})\.pth$')


def openmmlab_sha256_prefix(name):
    """OpenMMLab names published files `<name>-<first 8 hex digits of the sha256>.pth`.

    The same rule as centernet/checkpoint.py, which is not imported here because it needs torch."""
    match = _OPENMMLAB_SHA256_PREFIX.search(name)
    if not match:
        raise ValueError(f'{name} does not end in -<8 hex digits>.pth')
    return match.group(1)


@dataclass(frozen=True)
class RemoteFile:
    name: str                 # file name on disk
    url_path: str             # path under the mirror's base URL
    size: int | None = None   # bytes, where published
    # hashlib name -> hex digest, or its leading digits (OpenMMLab publishes only 8 of sha256)
    digests: dict = field(default_factory=dict)

    def url(self, mirror):
        return f'{mirror.rstrip("/")}/{self.url_path}'


CHECKPOINT_NAME = 'centernet_resnet18_140e_coco_20210705_093630-bb5b3bf7.pth'

RECORDED = {
    # URL: mmdetection configs/centernet/metafile.yml (and README.md), model
    # centernet_resnet18_140e_coco. Its size and full sha256 are not published; the file name's
    # sha256 prefix is the check.
    'checkpoint': RemoteFile(
        name=CHECKPOINT_NAME,
        url_path=f'mmdetection/v2.0/centernet/centernet_resnet18_140e_coco/{CHECKPOINT_NAME}',
        digests={'sha256': openmmlab_sha256_prefix(CHECKPOINT_NAME)}),
    # COCO publishes no checksums. md5: mlverse/torchvision R/dataset-coco.R (it is also the S3
    # ETag of the single-part upload); sha1: dmlc/gluon-cv scripts/datasets/mscoco.py; sizes:
    # the Content-Length images.cocodataset.org sends (download logs and manifests in public code).
    'images': RemoteFile(
        name='val2017.zip',
        url_path='zips/val2017.zip',
        size=815585330,
        digests={'md5': '442b8da7639aecaf257c1dceb8ba8c80',
                 'sha1': '4950dc9d00dbe1c933ee0170f5797584351d2a41'}),
    'annotations': RemoteFile(
        name='annotations_trainval2017.zip',
        url_path='annotations/annotations_trainval2017.zip',
        size=252907541,
        digests={'md5': 'f4bbac642086de4f52a3fdda2de5fa2c',
                 'sha1': '8551ee4bb5860311e79dace7e79cb91e432e78b3'}),
}


def one_line(value):
    """Exception texts may span lines; a UserError message may not."""
    return ' '.join(str(value).split())


# ---- verification ------------------------------------------------------------------------------

def file_digests(path, algorithms):
    """{algorithm: hex digest} of `path`, all in one read of the file."""
    hashers = {name: hashlib.new(name) for name in algorithms}
    with open(path, 'rb') as f:
        while block := f.read(CHUNK_BYTES):
            for hasher in hashers.values():
                hasher.update(block)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def verification_problem(path, remote):
    """None if `path` has the recorded size and digests, else what differs (a short phrase)."""
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        return f'size {size} bytes, recorded {remote.size}'
    found = file_digests(path, remote.digests)
    for algorithm, recorded in remote.digests.items():
        if not found[algorithm].startswith(recorded):
            return f'{algorithm} {found[algorithm][:len(recorded)]}, recorded {recorded}'
    return None


def describe_verified(remote):
    checks = ([f'{remote.size} bytes'] if remote.size is not None else []) + \
        [f'{algorithm} {digest[:8]}' for algorithm, digest in remote.digests.items()]
    return ', '.join(checks) + ' verified'


# ---- download ----------------------------------------------------------------------------------

def open_url(url, offset, manual_path, timeout):
    """GET `url` from byte `offset` on. Network and HTTP failures become one-line UserErrors.

    Returns the response, or None when the server says there is nothing past `offset` (416)."""
    headers = {'User-Agent': f'centernet-prepare/{__version__}'}
    if offset:
        headers['Range'] = f'bytes={offset}-'
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            exc.close()
            return None
        raise UserError(f'{url} answered HTTP {exc.code} {one_line(exc.reason)}: check the URL '
                        f'(mirror options), or download the file manually to {manual_path}'
                        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, 'reason', exc)
        raise UserError(f'cannot reach {url} ({one_line(reason) or type(reason).__name__}): check '
                        f'the network, or download the file manually to {manual_path} and run '
                        'again') from None


def content_range_start(response):
    """First byte of a 206 response, from `Content-Range: bytes START-END/TOTAL`."""
    match = re.match(r'bytes (\d+)-', response.headers.get('Content-Range', ''))
    return int(match.group(1)) if match else None


def stream_to_file(response, part, mode, offset, url):
    """Copy the response body into `part`; a body shorter than Content-Length is an error."""
    from tqdm import tqdm
    length = response.headers.get('Content-Length')
    length = int(length) if length and length.isdigit() else None
    total = offset + length if length is not None else None
    received = 0
    problem = None
    try:
        with open(part, mode) as f, tqdm(total=total, initial=offset, unit='B', unit_scale=True,
                                         unit_divisor=1024, desc=part.name[:-len('.part')]) as bar:
            while True:
                try:
                    block = response.read(CHUNK_BYTES)
                except (http.client.IncompleteRead, OSError) as exc:
                    problem = type(exc).__name__
                    break
                if not block:
                    break
                f.write(block)
                received += len(block)
                bar.update(len(block))
    except OSError as exc:  # the disk, not the network: reading is caught above
        failure = write_failure(part, exc, f'{part.name} is kept: run again to resume')
        if failure is None:
            raise
        raise failure from None
    if problem is None and length is not None and received != length:
        problem = 'connection closed early'
    if problem:
        raise UserError(f'download of {url} stopped after {offset + received} of '
                        f'{total if total is not None else "?"} bytes ({problem}); {part} is kept: '
                        'run again to resume')


def download_to_part(url, part, size, manual_path, log, timeout=NETWORK_TIMEOUT_S):
    """Bring `part` up to the whole file: resume it with a Range request, or start over where the
    server ignores Range. Raises UserError when the transfer does not complete."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        log(f'{part} is larger than the recorded {size} bytes: starting over')
        offset = 0
    if size is not None and offset == size:
        return  # already complete; verification decides whether it is right
    response = open_url(url, offset, manual_path, timeout)
    if response is None:
        log(f'{url}: the server has nothing past byte {offset}: checking {part} as it is')
        return
    with contextlib.closing(response):
        mode = 'wb'
        if offset and response.status == 206:
            if content_range_start(response) != offset:
                part.unlink()
                raise UserError(f'{url} resumed at the wrong byte (Content-Range '
                                f'{response.headers.get("Content-Range")!r}, asked for {offset}): '
                                f'deleted {part}; run again to download it afresh')
            mode = 'ab'
            log(f'resuming {url} at byte {offset}')
        elif offset:
            log(f'{url}: the server does not resume downloads: starting over')
            offset = 0
        else:
            log(f'downloading {url}')
        stream_to_file(response, part, mode, offset, url)


def fetch(remote, folder, mirror, log, timeout=NETWORK_TIMEOUT_S):
    """A verified copy of `remote` at folder/remote.name: the one already there, or downloaded."""
    path = Path(folder) / remote.name
    url = remote.url(mirror)
    if path.is_file():
        problem = verification_problem(path, remote)
        if problem is None:
            log(f'found {path} ({describe_verified(remote)})')
            return path
        path.unlink()
        log(f'{path} does not match the recorded file ({problem}): deleted it, downloading again')
    part = path.with_name(path.name + '.part')
    download_to_part(url, part, remote.size, path, log, timeout)
    problem = verification_problem(part, remote)
    if problem is not None:
        part.unlink()
        raise UserError(f'{url} sent a file that does not match the recorded one ({problem}): '
                        f'deleted it; run again, or download it manually to {path}')
    move_into_place(part, path)
    log(f'saved {path} ({describe_verified(remote)})')
    return path


# ---- unpacking ---------------------------------------------------------------------------------

def unpack_member(archive, member, target):
    """Extract one member of a zip to `target`, through a temporary file and a rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as source, \
                atomic_path(target) as tmp, open(tmp, 'wb') as out:
            shutil.copyfileobj(source, out, CHUNK_BYTES)
    except KeyError:
        raise UserError(f'{archive} has no {member}: it is not COCO\'s '
                        'annotations_trainval2017.zip; delete it and run again') from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f'cannot unpack {member} from {archive} to {target}: {one_line(exc)}'
                        ) from None


def unpack_folder(archive, folder_in_zip, target):
    """Extract `folder_in_zip/` of a zip as `target`, all or nothing: into a temporary folder
    beside `target`, renamed into place only once every file is out. Returns the file count."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{target.name}.', suffix='.tmp', dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist()
                       if m.filename.startswith(folder_in_zip + '/') and not m.is_dir()]
            if not members:
                raise UserError(f'{archive} has no {folder_in_zip}/ folder: it is not COCO\'s '
                                f'{archive.name}; delete it and run again')
            for member in members:
                zf.extract(member, tmp)  # zipfile drops '..' and leading '/' from member names
        os.rename(tmp / folder_in_zip, target)
        return len(members)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f'cannot unpack {archive} to {target}: {one_line(exc)}') from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- the three steps ---------------------------------------------------------------------------

def prepare_checkpoint(checkpoint_dir, mirror, files, log, timeout=NETWORK_TIMEOUT_S):
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return fetch(files['checkpoint'], checkpoint_dir, mirror, log, timeout)


def prepare_annotations(datasets_dir, mirror, files, keep_archives, log, timeout):
    target = datasets_dir / ANNOTATION_MEMBER
    if target.is_file():
        log(f'found {target}')
        return
    archive = fetch(files['annotations'], datasets_dir, mirror, log, timeout)
    unpack_member(archive, ANNOTATION_MEMBER, target)
    log(f'unpacked {target}')
    if not keep_archives:
        archive.unlink()


def count_images(folder):
    return sum(1 for p in folder.iterdir() if p.suffix.lower() in ('.jpg', '.jpeg'))


def prepare_images(datasets_dir, mirror, files, keep_archives, log, timeout):
    for folder in (IMAGE_FOLDER, ALSO_ACCEPTED_IMAGE_FOLDER):
        if (datasets_dir / folder).is_dir():
            log(f'found {datasets_dir / folder} ({count_images(datasets_dir / folder)} images)')
            return
    target = datasets_dir / IMAGE_FOLDER
    archive = fetch(files['images'], datasets_dir, mirror, log, timeout)
    count = unpack_folder(archive, IMAGE_FOLDER_IN_ZIP, target)
    log(f'unpacked {target} ({count} files)')
    if not keep_archives:
        archive.unlink()


def prepare_coco(datasets_dir, mirror, files, keep_archives, log, timeout=NETWORK_TIMEOUT_S):
    datasets_dir = Path(datasets_dir)
    datasets_dir.mkdir(parents=True, exist_ok=True)
    prepare_annotations(datasets_dir, mirror, files, keep_archives, log, timeout)
    prepare_images(datasets_dir, mirror, files, keep_archives, log, timeout)


def prepare(args, files=None, log=print, timeout=None):
    """What prepare.py does with its parsed arguments (see parse_args there).

    `files` replaces the RECORDED table (the tests serve small fakes with their own digests)."""
    files = files or RECORDED
    timeout = timeout or NETWORK_TIMEOUT_S
    if args.only in ('checkpoint', 'all'):
        prepare_checkpoint(args.checkpoint_dir, args.openmmlab_mirror, files, log, timeout)
    if args.only in ('coco', 'all'):
        if not args.datasets:
            raise UserError('no dataset folder: pass --datasets DIR or set DATASETS_DIR '
                            '(or use --only checkpoint)')
        prepare_coco(args.datasets, args.coco_mirror, files, args.keep_archives, log, timeout)
    return 0
