"""The catalogue of odd image files: what decodes must give mmdet's pixels, what cannot must be one
BadImageError naming the file, and a file that declares more pixels than may be decoded must be
refused before anything large is allocated.

The truth for valid files is mmdet's decode itself: cv2.imdecode(IMREAD_COLOR) of the same bytes
(mmcv.imfrombytes, backend cv2). Size bombs are a few hundred bytes that declare up to 4 billion
pixels; their peak memory is measured in a fresh process (its own VmHWM), not trusted.
"""

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT
from centernet import image_header
from centernet.image_header import PixelLimit, jpeg_is_complete
from centernet.preprocess import IMAGE_SUFFIXES, BadImageError, decode_image, read_image


def encode(suffix, image, *params):
    ok, data = cv2.imencode(suffix, image, list(params))
    assert ok, suffix
    return data.tobytes()


# OpenCV 4.11 (the serving venv's, for numpy<2) has neither a GIF nor an AVIF codec; OpenCV 5
# has both. The files of a format this OpenCV cannot write are left out, and their tests skipped.
UNWRITABLE = {name for name, suffix in (('rgb.gif', '.gif'), ('rgb.avif', '.avif'))
              if not cv2.haveImageWriter(f'x{suffix}')}


def writable(*names):
    return [pytest.param(name, marks=pytest.mark.skipif(
        name in UNWRITABLE, reason=f'OpenCV {cv2.__version__} cannot write {name}'))
        for name in names]


def photo(height=61, width=83, channels=3, dtype=np.uint8):
    """Smooth gradients plus texture: compresses like a photo, exercises every channel."""
    ys, xs = np.mgrid[0:height, 0:width]
    planes = [(xs * 3 + ys) % 256, (ys * 5) % 256, (xs * ys) % 256, (xs + 2 * ys) % 256]
    image = np.dstack(planes[:channels]).astype(np.float64)
    if dtype == np.uint16:
        return (image * 257).astype(np.uint16)
    if dtype == np.float32:
        return (image / 255).astype(np.float32)
    return image.astype(np.uint8).squeeze()


def with_app1(jpeg, payload):
    """`jpeg` with an APP1 segment right after SOI."""
    return jpeg[:2] + b'\xff\xe1' + struct.pack('>H', len(payload) + 2) + payload + jpeg[2:]


def exif_orientation(value):
    """An EXIF APP1 payload holding only Orientation (tag 0x0112)."""
    ifd = struct.pack('<H', 1) + struct.pack('<HHII', 0x0112, 3, 1, value) + struct.pack('<I', 0)
    return b'Exif\x00\x00' + b'II*\x00' + struct.pack('<I', 8) + ifd


def png_chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def png_of_rows(width, height, color_type, rows, palette=None):
    """A PNG written by hand, for the kinds OpenCV does not write: palette (3), gray+alpha (4)."""
    raw = b''.join(b'\x00' + bytes(row) for row in rows)  # filter 0 on every row
    chunks = [png_chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, color_type, 0, 0, 0))]
    if palette is not None:
        chunks.append(png_chunk(b'PLTE', bytes(palette)))
    chunks += [png_chunk(b'IDAT', zlib.compress(raw)), png_chunk(b'IEND', b'')]
    return b'\x89PNG\r\n\x1a\n' + b''.join(chunks)


def png_declaring(width, height):
    """A well-formed PNG start whose IHDR declares width x height RGB pixels (a little data)."""
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + png_chunk(b'IHDR', ihdr)
            + png_chunk(b'IDAT', zlib.compress(b'\x00' * 100000, 9)) + png_chunk(b'IEND', b''))


def jpeg_declaring(width, height):
    """A real JPEG whose SOF0 says width x height."""
    data = bytearray(encode('.jpg', photo()))
    sof = data.index(b'\xff\xc0')
    struct.pack_into('>HH', data, sof + 5, height, width)
    return bytes(data)


def tiff_declaring(width, height):
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
               (273, 4, 8), (277, 3, 1), (278, 4, height),
               (279, 4, min(width * height, 2 ** 32 - 1))]
    ifd = struct.pack('<H', len(entries)) + b''.join(
        struct.pack('<HHII', tag, kind, 1, value) for tag, kind, value in entries)
    return b'II*\x00' + struct.pack('<I', 8) + ifd + struct.pack('<I', 0)


def webp_declaring(width, height):
    vp8x = b'VP8X' + struct.pack('<I', 10) + b'\x00' * 4 + (width - 1).to_bytes(3, 'little') \
        + (height - 1).to_bytes(3, 'little')
    return b'RIFF' + struct.pack('<I', 4 + len(vp8x)) + b'WEBP' + vp8x


def bmp_declaring(width, height):
    info = struct.pack('<IiiHHIIiiII', 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b'BM' + struct.pack('<IHHI', 54 + 64, 0, 0, 54) + info + b'\x00' * 64


MOTION_VIDEO = (b'\x00\x00\x00\x18ftypmp42' + bytes(range(256)) * 8 + b'\xff\xda\x00\x0c'
                + b'\xff\xd8\xff\xe0' + b'\x00' * 64)  # an MP4-ish tail: SOS and SOI bytes in it


@pytest.fixture(scope='module')
def valid_files():
    """name -> bytes of files mmdet decodes (cv2.imdecode), each as OpenCV writes it."""
    rgb, jpeg = photo(), encode('.jpg', photo(), cv2.IMWRITE_JPEG_QUALITY, 90)
    thumbnail = encode('.jpg', photo(16, 24))
    files = {
        'baseline.jpg': jpeg,
        'progressive.jpg': encode('.jpg', rgb, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
        'gray.jpg': encode('.jpg', photo(channels=1)),
        'exif-rotated.jpg': with_app1(jpeg, exif_orientation(6)),
        'exif-thumbnail.jpg': with_app1(jpeg, b'Exif\x00\x00' + thumbnail),
        'motion-photo.jpg': jpeg + MOTION_VIDEO,
        'trailing-zeros.jpg': jpeg + b'\x00' * 100,
        'rgb.png': encode('.png', rgb),
        'rgba.png': encode('.png', photo(channels=4)),
        '16-bit.png': encode('.png', photo(dtype=np.uint16)),
        'gray.png': encode('.png', photo(channels=1)),
        'one-pixel.png': encode('.png', rgb[:1, :1]),
        'tall-3x5000.png': encode('.png', np.repeat(rgb[:, :3], 82, axis=0)[:5000]),
        'wide-5000x3.jpg': encode('.jpg', np.repeat(rgb[:3], 61, axis=1)[:, :5000]),
        'rgb.bmp': encode('.bmp', rgb),
        'rgb.tif': encode('.tif', rgb),
        '16-bit.tif': encode('.tif', photo(dtype=np.uint16)),
        'lossy.webp': encode('.webp', rgb, cv2.IMWRITE_WEBP_QUALITY, 80),
        'lossless.webp': encode('.webp', rgb, cv2.IMWRITE_WEBP_QUALITY, 101),
        'rgb.ppm': encode('.ppm', rgb),
        'gray.pgm': encode('.pgm', photo(channels=1)),
        'bitmap.pbm': encode('.pbm', (photo(channels=1) > 127).astype(np.uint8) * 255),
        'rgb.pam': encode('.pam', rgb),
        'float.pfm': encode('.pfm', photo(dtype=np.float32)),
        'sun.ras': encode('.ras', rgb),
        'radiance.hdr': encode('.hdr', photo(dtype=np.float32)),
        'rgb.jp2': encode('.jp2', photo(96, 128)),
    }
    for name, suffix in (('rgb.gif', '.gif'), ('rgb.avif', '.avif')):
        if name not in UNWRITABLE:
            files[name] = encode(suffix, rgb)
    gray = photo(channels=1)
    palette = [v for i in range(16) for v in (i * 16, 255 - i * 16, i * 8)]
    files['palette.png'] = png_of_rows(83, 61, 3, gray // 16, palette=palette)
    files['gray-alpha.png'] = png_of_rows(83, 61, 4, np.dstack([gray, 255 - gray]).reshape(61, -1))
    files['png-named.jpg'] = files['rgb.png']
    return files


SUFFIX_EXAMPLE = {'.jpg': 'baseline.jpg', '.jpeg': 'baseline.jpg', '.jpe': 'baseline.jpg',
                  '.png': 'rgb.png', '.bmp': 'rgb.bmp', '.dib': 'rgb.bmp', '.tif': 'rgb.tif',
                  '.tiff': 'rgb.tif', '.webp': 'lossy.webp', '.gif': 'rgb.gif', '.jp2': 'rgb.jp2',
                  '.avif': 'rgb.avif', '.pbm': 'bitmap.pbm', '.pgm': 'gray.pgm', '.ppm': 'rgb.ppm',
                  '.pxm': 'rgb.ppm', '.pnm': 'rgb.ppm', '.pam': 'rgb.pam', '.pfm': 'float.pfm',
                  '.sr': 'sun.ras', '.ras': 'sun.ras', '.hdr': 'radiance.hdr',
                  '.pic': 'radiance.hdr'}


def test_every_folder_suffix_is_a_format_this_opencv_reads(valid_files, tmp_path):
    """The folder readers (demo, INT8 calibration) take exactly these suffixes: each names a
    format OpenCV has a decoder for (cv2.haveImageReader looks at the file's signature)."""
    assert sorted(SUFFIX_EXAMPLE) == sorted(IMAGE_SUFFIXES)
    for suffix, example in SUFFIX_EXAMPLE.items():
        if example in UNWRITABLE:
            continue  # no such file to look at; test_a_format_without_a_decoder_here_is_named
        assert cv2.haveImageReader(str(_written(tmp_path / f'x{suffix}', valid_files[example])))


@pytest.mark.parametrize('name', writable(
    'baseline.jpg', 'progressive.jpg', 'gray.jpg', 'exif-rotated.jpg', 'exif-thumbnail.jpg',
    'motion-photo.jpg', 'trailing-zeros.jpg', 'rgb.png', 'rgba.png', '16-bit.png', 'gray.png',
    'one-pixel.png', 'tall-3x5000.png', 'wide-5000x3.jpg', 'rgb.bmp', 'rgb.tif', '16-bit.tif',
    'lossy.webp', 'lossless.webp', 'rgb.gif', 'rgb.ppm', 'gray.pgm', 'bitmap.pbm', 'rgb.pam',
    'float.pfm', 'sun.ras', 'radiance.hdr', 'rgb.avif', 'rgb.jp2', 'palette.png',
    'gray-alpha.png', 'png-named.jpg'))
def test_valid_files_decode_as_mmdet_does(valid_files, tmp_path, name):
    """Same pixels as mmcv.imfrombytes (cv2.imdecode IMREAD_COLOR); the header's size is the
    decoded one (EXIF rotation included), from bytes and from a file alike."""
    data = valid_files[name]
    truth = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert truth is not None
    decoded = decode_image(data, name)
    assert decoded.dtype == np.uint8 and decoded.shape == truth.shape
    assert np.array_equal(decoded, truth)
    header = image_header.header_of_bytes(data)
    assert (header.height, header.width) == truth.shape[:2]
    path = tmp_path / name
    path.write_bytes(data)
    assert np.array_equal(read_image(path), truth)


# The smallest GIF: 1 x 1, a 2-colour global palette, one LZW-coded pixel (GIF89a, section 22).
ONE_PIXEL_GIF = (b'GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00'
                 b',\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;')


def test_a_format_without_a_decoder_here_is_named(tmp_path):
    """Where the installed OpenCV has no decoder for a well-formed file's format (4.11: GIF),
    the refusal says so and what to do, instead of calling the file corrupt."""
    path = _written(tmp_path / 'one.gif', ONE_PIXEL_GIF)
    if cv2.haveImageReader(str(path)):
        decoded = read_image(path)  # and then it is read like any picture
        assert decoded.shape == (1, 1, 3) and np.array_equal(decoded, cv2.imread(str(path)))
        return
    with pytest.raises(BadImageError) as refusal:
        read_image(path)
    assert refusal.value.reason == (f'this OpenCV ({cv2.__version__}) has no GIF decoder: '
                                    'convert the picture to PNG or JPEG')


def test_a_corrupt_file_without_a_writable_temporary_folder_is_still_one_refusal(
        valid_files, monkeypatch, tmp_path):
    """Asking OpenCV whether it has the format's decoder writes the first bytes to a temporary
    file; with no writable temporary folder (full disk) the refusal is the generic one, not an
    OSError that --skip_bad_images and the one error: line would not catch."""
    import tempfile
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path / 'missing'))
    data = valid_files['rgb.png'][:60] + b'\x00' * 200 + valid_files['rgb.png'][260:]
    with pytest.raises(BadImageError) as refusal:
        decode_image(data, 'corrupt.png')
    assert refusal.value.reason.startswith('not a readable image')


def test_a_motion_photo_is_the_jpeg_it_starts_with(valid_files):
    """Appended data is not part of the picture: same pixels as the JPEG alone."""
    assert np.array_equal(decode_image(valid_files['motion-photo.jpg']),
                          decode_image(valid_files['baseline.jpg']))


def _cut_progressive_between_scans(data):
    second_scan = data.index(b'\xff\xda', data.index(b'\xff\xda') + 2)
    return data[:data.rindex(b'\xff', 0, second_scan)]  # before the tables of the 2nd scan


@pytest.mark.parametrize('name, damage, reason', [
    ('empty.jpg', lambda f: b'', 'empty file'),
    ('text.jpg', lambda f: b'hello, this is not a picture\n' * 4, 'not a readable image'),
    ('half.jpg', lambda f: f['baseline.jpg'][:len(f['baseline.jpg']) // 2], 'truncated JPEG'),
    ('no-eoi.jpg', lambda f: f['baseline.jpg'][:-2], 'truncated JPEG'),
    ('cut-between-scans.jpg', lambda f: _cut_progressive_between_scans(f['progressive.jpg']),
     'truncated JPEG'),
    ('cut-after-thumbnail.jpg', lambda f: f['exif-thumbnail.jpg'][:-300], 'truncated JPEG'),
    ('zeroed-start.jpg', lambda f: b'\x00' * 64 + f['baseline.jpg'][64:], 'not a readable image'),
    ('signature-only.png', lambda f: b'\x89PNG\r\n\x1a\n', 'not a readable image'),
    ('corrupt-data.png', lambda f: f['rgb.png'][:60] + b'\x00' * 200 + f['rgb.png'][260:],
     'not a readable image'),
    ('gif-header-only.gif', lambda f: b'GIF89a\x01', 'not a readable image'),
    ('svg.png', lambda f: b'<svg width="10" height="10" xmlns="http://www.w3.org/2000/svg"/>',
     'not a readable image'),
    ('no-size.jpg', lambda f: jpeg_declaring(0, 0), 'not a readable image'),
])
def test_bad_files_are_one_bad_image_error(valid_files, tmp_path, name, damage, reason):
    data = damage(valid_files)
    for decode in (lambda: decode_image(data, name),
                   lambda: read_image(_written(tmp_path / name, data))):
        with pytest.raises(BadImageError) as error:
            decode()
        assert error.value.path.endswith(name) and reason in error.value.reason
        assert str(error.value) == f'{error.value.path}: {error.value.reason}'
        assert '\n' not in str(error.value)


def _written(path, data):
    path.write_bytes(data)
    return path


def test_jpeg_completeness_follows_the_marker_structure(valid_files):
    """The old test (last EOI after the last SOS) refused a motion photo whose video holds an
    SOS byte pair; the structure walk reads it as complete and still catches every cut."""
    jpeg = valid_files['baseline.jpg']
    assert jpeg_is_complete(jpeg) and jpeg_is_complete(valid_files['motion-photo.jpg'])
    assert valid_files['motion-photo.jpg'].rfind(b'\xff\xd9') < \
        valid_files['motion-photo.jpg'].rfind(b'\xff\xda')  # what fooled the old test
    cuts = range(2, len(jpeg) - 1, max(1, len(jpeg) // 97))
    assert not any(jpeg_is_complete(jpeg[:cut]) for cut in cuts)
    assert jpeg_is_complete(b'\xff\xd8' + b'junk') is None  # libjpeg judges those


# --- size bombs: refused before decoding, in one fresh process per run -------------------------

BOMBS = {  # name -> (bytes, declared width, height)
    'png-60000.png': (png_declaring(60000, 60000), 60000, 60000),    # over OpenCV's own cap
    'png-30000.png': (png_declaring(30000, 30000), 30000, 30000),    # under it: 2.7 GB decoded
    'jpeg-65000.jpg': (jpeg_declaring(65000, 65000), 65000, 65000),
    'gif-65535.gif': (b'GIF89a' + struct.pack('<HH', 65535, 65535) + b'\x00\x00\x00;',
                      65535, 65535),
    'bmp-40000.bmp': (bmp_declaring(40000, 40000), 40000, 40000),
    'tiff-100000.tif': (tiff_declaring(100000, 100000), 100000, 100000),
    'webp-16383.webp': (webp_declaring(16383, 16383), 16383, 16383),
    'ppm-60000.ppm': (b'P6\n60000 60000\n255\n' + b'\x00' * 64, 60000, 60000),
    'pam-60000.pam': (b'P7\nWIDTH 60000\nHEIGHT 60000\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\n'
                      b'ENDHDR\n' + b'\x00' * 64, 60000, 60000),
    'pfm-60000.pfm': (b'PF\n60000 60000\n-1.0\n' + b'\x00' * 64, 60000, 60000),
    'hdr-60000.hdr': (b'#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 60000 +X 60000\n' + b'\x00' * 64,
                      60000, 60000),
    'sun-60000.ras': (struct.pack('>8I', 0x59a66a95, 60000, 60000, 24, 0, 1, 0, 0) + b'\x00' * 64,
                      60000, 60000),
}

# Decodes each file given (read_image, then decode_image on its bytes), prints what it was told,
# and its own peak memory (VmHWM: a vfork'ed child's getrusage would count pytest's peak).
_DECODER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from centernet.preprocess import BadImageError, PixelLimit, decode_image, read_image
above_opencv = PixelLimit(max_pixels=2 ** 40, check_memory=False)
results = {}
for path in sys.argv[2:]:
    limit = above_opencv if 'opencv-cap' in path else None
    reasons = []
    for decode in (lambda: read_image(path, limit),
                   lambda: decode_image(open(path, 'rb').read(), path, limit)):
        try:
            reasons.append('decoded %s' % (decode().shape,))
        except BadImageError as error:
            reasons.append(str(error))
    results[path] = reasons
peak = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM'))
print(json.dumps(dict(results=results, peak_kib=peak)))
"""


@pytest.fixture(scope='module')
def bomb_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp('bombs')
    paths = [_written(folder / name, data) for name, (data, _, _) in BOMBS.items()]
    paths.append(_written(folder / 'opencv-cap.png', png_declaring(40000, 30000)))
    done = subprocess.run([sys.executable, '-c', _DECODER, str(ROOT), *map(str, paths)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return folder, json.loads(done.stdout)


@pytest.mark.parametrize('name', sorted(BOMBS))
def test_size_bombs_are_refused_from_their_header(bomb_run, name):
    folder, run = bomb_run
    _, width, height = BOMBS[name]
    path = str(folder / name)
    for message in run['results'][path]:  # from the file and from its bytes
        assert message.startswith(f'{path}: {width}x{height} pixels ')
        assert 'over the limit of 250 MP' in message and 'would need about' in message


def test_opencvs_own_cap_is_a_bad_image_error_too(bomb_run):
    """A limit raised above OpenCV's 2^30-pixel cap: its cv2.error becomes the kit's line."""
    folder, run = bomb_run
    for message in run['results'][str(folder / 'opencv-cap.png')]:
        assert 'OpenCV cannot decode it' in message and '\n' not in message


def test_size_bombs_allocate_nothing_large(bomb_run):
    """13 files declaring 0.27 to 4.3 billion pixels (2.7 to 40 GB decoded), each read twice:
    the process stays at what importing OpenCV and numpy takes."""
    _, run = bomb_run
    assert run['peak_kib'] < 200 * 1024, run['peak_kib']


# --- the limit: pixels, memory, the estimate ---------------------------------------------------

def test_the_estimate_counts_file_decode_and_what_follows():
    header = image_header.ImageHeader('jpeg', 4000, 3000, 6.2)
    limit = PixelLimit(after_decode=108.0, task='decode and run at full size on onnxruntime',
                       raise_with='--max_pixels', check_memory=False)
    assert limit.needed_bytes(header, file_bytes=2_000_000) == 2_000_000 + 12e6 * (6.2 + 108.0)
    with pytest.raises(BadImageError) as error:
        PixelLimit(max_pixels=10_000_000, after_decode=108.0, task='decode and run',
                   raise_with='--max_pixels', check_memory=False).check('big.jpg', header)
    assert str(error.value) == (
        'big.jpg: 4000x3000 pixels (12.0 MP) would need about 1.4 GB of memory to decode and run '
        '(114 bytes per pixel); that is over the limit of 10 MP: shrink the picture, or raise '
        '--max_pixels if this machine has the memory')


def test_a_picture_larger_than_the_memory_available_is_refused(monkeypatch, valid_files):
    monkeypatch.setattr(image_header, 'available_memory', lambda: 20_000)
    with pytest.raises(BadImageError) as error:
        decode_image(valid_files['rgb.png'], 'rgb.png')  # 83 x 61 x 6.2 B = 31 kB
    assert str(error.value) == ('rgb.png: 83x61 pixels would need about 31 kB of memory to '
                                'decode (6 bytes per pixel), more than the 20 kB available now: '
                                'shrink the picture, or free memory')
    monkeypatch.setattr(image_header, 'available_memory', lambda: None)  # unknown: not checked
    assert decode_image(valid_files['rgb.png']).shape == (61, 83, 3)


def test_available_memory_is_meminfos_or_less():
    available = image_header.available_memory()
    with open('/proc/meminfo') as meminfo:
        listed = next(int(line.split()[1]) * 1024 for line in meminfo
                      if line.startswith('MemAvailable:'))
    assert 0 < available <= listed * 1.5  # the value moves between the two reads


# --- the picture demo on a folder of odd files ---------------------------------------------------

def test_demo_on_a_folder_of_odd_files(tmp_path, onnx_paths, valid_files):
    """inference.py --images as a user runs it, under a strict UTF-8 stdout: same-stem inputs get
    distinct pictures and detections.json says which; a GIF is a picture; a text file is named
    as ignored; an unreadable picture is skipped, named with its reason, and listed in the JSON;
    a file name that is not UTF-8 prints escaped instead of crashing the run."""
    folder = tmp_path / 'in'
    folder.mkdir()
    inputs = {'photo.jpg': valid_files['baseline.jpg'], 'photo.png': valid_files['rgb.png'],
              'Photo.webp': valid_files['lossy.webp'], 'anim.gif': valid_files.get('rgb.gif'),
              'broken.jpg': valid_files['baseline.jpg'][:300], 'notes.txt': b'not a picture'}
    if inputs['anim.gif'] is None:  # an OpenCV without GIF (test_a_format_without_a_decoder_...)
        del inputs['anim.gif']
    for name, data in inputs.items():
        _written(folder / name, data)
    latin1 = os.fsdecode(b'caf\xe9.png')  # a Latin-1 name: not UTF-8
    _written(folder / latin1, valid_files['rgb.png'])
    out = tmp_path / 'out'
    done = subprocess.run([sys.executable, str(ROOT / 'inference.py'), '--engine',
                           str(onnx_paths['fp32']), '--images', str(folder), '--out', str(out),
                           '--skip_bad_images', '--quiet', '--workers', '0'],
                          capture_output=True, timeout=300,
                          env={**os.environ, 'PYTHONIOENCODING': 'utf-8:strict'})
    stdout = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert "caf\\xe9.png" in stdout  # the undecodable byte, escaped
    assert ('ignored 1 file(s) whose suffix is not a picture format OpenCV reads: notes.txt'
            in stdout)
    assert f'  {folder / "broken.jpg"}: truncated JPEG' in stdout
    listing = {os.fsencode(entry['file']): entry
               for entry in json.loads((out / 'detections.json').read_text())}
    assert set(listing) == {os.fsencode(folder / name) for name in inputs if name != 'notes.txt'} \
        | {os.fsencode(folder / latin1)}
    broken = listing.pop(os.fsencode(folder / 'broken.jpg'))
    assert broken['annotated'] is None and broken['skipped'].startswith('truncated JPEG')
    pictures = [entry['annotated'] for entry in listing.values()]
    assert len(set(p.lower() for p in pictures)) == len(pictures) == len(listing)  # one each
    assert {os.path.basename(listing[os.fsencode(folder / name)]['annotated'])
            for name in ('photo.jpg', 'photo.png', 'Photo.webp')} == \
        {'photo_jpg.jpg', 'photo_png.jpg', 'Photo_webp.jpg'}
    for file, entry in listing.items():  # each picture is its own input, drawn
        # read_image, not cv2.imread: OpenCV 5's imread crashes on a name that is not UTF-8
        drawn, original = read_image(entry['annotated']), read_image(os.fsdecode(file))
        assert drawn.shape == original.shape and len(entry['detections']) == 100
    assert f'wrote {len(pictures)} picture(s)' in stdout


def test_demo_will_not_draw_over_its_inputs(capsys, tmp_path, onnx_paths, valid_files):
    import inference
    from common import run_main
    folder = tmp_path / 'in'
    folder.mkdir()
    _written(folder / 'photo.jpg', valid_files['baseline.jpg'])
    with pytest.raises(SystemExit) as code:
        run_main(inference.main, ['--engine', str(onnx_paths['fp32']), '--images', str(folder),
                                  '--out', str(folder), '--quiet'])
    assert code.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f'error: --out {folder} would overwrite the input picture {folder / "photo.jpg"}: '
        'choose another folder')
    assert (folder / 'photo.jpg').read_bytes() == valid_files['baseline.jpg']


def test_output_names_are_distinct_whatever_the_names():
    from centernet.demo import output_names
    names = output_names(['a/photo.jpg', 'b/photo.png', 'c/photo_png.jpg', 'd/x.jpg', 'e/X.JPG'])
    assert names == ['photo_jpg.jpg', 'photo_png.jpg', 'photo_png-2.jpg', 'x_jpg.jpg',
                     'X_JPG-2.jpg']  # one file on a case-insensitive disk otherwise


@pytest.mark.parametrize('membership, files, room', [
    ('0::/job\n', {'job/memory.max': '1000000', 'job/memory.current': '250000'}, 750000),
    ('0::/job\n', {'job/memory.max': 'max', 'job/memory.current': '250000'}, None),
    ('0::/\n', {'memory.max': '900', 'memory.current': '100'}, 800),
    # cgroup v1; a container sees its own group at the mount's root, not at the host's path
    ('4:memory:/docker/abc\n1:cpu:/\n', {'memory/memory.limit_in_bytes': '5000',
                                           'memory/memory.usage_in_bytes': '1000'}, 4000),
    ('1:cpu:/\n', {}, None),
])
def test_the_memory_left_under_a_containers_limit(tmp_path, membership, files, room):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + '\n')
    (tmp_path / 'cgroup').write_text(membership)
    assert image_header._cgroup_room(tmp_path / 'cgroup', tmp_path) == room


# --- the picture demo: what it cannot write, and all-or-nothing output ---------------------------

def _demo(capsys, onnx_paths, images, out, *extra):
    """inference.py --images as a user runs it: (exit code, stdout, stderr)."""
    import inference
    from common import run_main
    with pytest.raises(SystemExit) as code:
        run_main(inference.main, ['--engine', str(onnx_paths['fp32']), '--images', str(images),
                                  '--out', str(out), '--quiet', '--workers', '0', *extra])
    captured = capsys.readouterr()
    return code.value.code, captured.out, captured.err


def _files_under(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob('*') if p.is_file()) \
        if folder.exists() else []


@pytest.fixture
def wide_folder(tmp_path, valid_files):
    """Two ordinary pictures around a valid 3 x 70000 PNG, which passes --max_pixels (0.2 MP)
    but has a side longer than a JPEG (the demo's output) can hold; and, with a picture's
    suffix, a folder and a link to nothing, which the demo must name as left out."""
    folder = tmp_path / 'in'
    folder.mkdir()
    _written(folder / 'a.jpg', valid_files['baseline.jpg'])
    _written(folder / 'b_wide.png', encode('.png', np.full((3, 70000, 3), 200, np.uint8)))
    _written(folder / 'c.png', valid_files['rgb.png'])
    (folder / 'dir.jpg').mkdir()
    (folder / 'gone.jpg').symlink_to(tmp_path / 'nothing.jpg')
    return folder


def test_demo_refuses_a_picture_jpeg_cannot_hold_before_detection(capsys, tmp_path, onnx_paths,
                                                                  wide_folder):
    """It used to pass the header check, be detected, and crash in cv2.imencode (AttributeError
    on its failed result) with the pictures before it left in --out, even with --skip_bad_images."""
    wide = wide_folder / 'b_wide.png'
    out = tmp_path / 'out'
    code, stdout, err = _demo(capsys, onnx_paths, wide_folder, out)
    assert code == 2 and err.strip() == (
        f'error: {wide}: 70000x3 pixels: a side over 65500 pixels, more than a JPEG can hold, and '
        'the demo writes its pictures as JPEG: shrink the picture (use --skip_bad_images to count '
        'it as an image without detections and go on)')
    assert _files_under(out) == []
    code, stdout, err = _demo(capsys, onnx_paths, wide_folder, out, '--skip_bad_images')
    assert code == 0, err
    assert 'ignored 2 entries named as a picture that are not a file: dir.jpg (a folder), ' \
           'gone.jpg (a link to nothing)' in stdout
    assert f'  {wide}: 70000x3 pixels: a side over 65500 pixels' in stdout
    listing = json.loads((out / 'detections.json').read_text())
    assert [(Path(e['file']).name, e['annotated'] and Path(e['annotated']).name) for e in listing] \
        == [('a.jpg', 'a.jpg'), ('b_wide.png', None), ('c.png', 'c.jpg')]
    assert _files_under(out) == [Path('a.jpg'), Path('c.jpg'), Path('detections.json')]


def test_demo_writes_all_its_pictures_or_none(capsys, tmp_path, onnx_paths, wide_folder,
                                              monkeypatch):
    """A picture OpenCV cannot encode (its `ok` is now checked), and one that cannot be read a
    second time for drawing, are skipped with --skip_bad_images; without it the run stops and
    --out keeps nothing of this run, though a picture was encoded before."""
    from centernet import demo
    (wide_folder / 'b_wide.png').unlink()
    real_imencode, real_read, calls = cv2.imencode, demo.read_image, []

    def imencode(suffix, image, params):  # the second picture fails
        calls.append(suffix)
        return (False, None) if len(calls) > 1 else real_imencode(suffix, image, params)
    monkeypatch.setattr(demo.cv2, 'imencode', imencode)
    out = tmp_path / 'out'
    code, _, err = _demo(capsys, onnx_paths, wide_folder, out)
    assert code == 2 and err.strip() == (
        f'error: {wide_folder / "c.png"}: OpenCV could not write its 83x61 picture as JPEG (use '
        '--skip_bad_images to leave it out and go on)')
    assert _files_under(out) == []

    def read_image(path, limit=None):  # the file changed, or memory ran short, since the loader
        if path.endswith('a.jpg'):
            raise BadImageError(path, 'not a readable image (corrupt, truncated or unknown format)')
        return real_read(path, limit)
    monkeypatch.setattr(demo, 'read_image', read_image)
    code, stdout, err = _demo(capsys, onnx_paths, wide_folder, out, '--skip_bad_images')
    assert code == 0, err
    assert f'  {wide_folder / "a.jpg"}: not a readable image' in stdout
    assert f'  {wide_folder / "c.png"}: OpenCV could not write its 83x61 picture' in stdout
    assert _files_under(out) == [Path('detections.json')]
    assert [e['skipped'] is not None for e in json.loads((out / 'detections.json').read_text())] \
        == [True, True]


def test_demo_stopped_by_sigterm_leaves_no_pictures(tmp_path, onnx_paths):
    """A real SIGTERM while the demo writes its pictures (the first is there, more follow): exit
    2, the stop's one line, and nothing of the run in --out (its pictures used to stay, without
    detections.json, under a message saying no partial output was written)."""
    import signal
    folder = tmp_path / 'in'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(16):  # noise encodes slowly: each picture takes a while to write
        _written(folder / f'p{index:02d}.png',
                 encode('.png', rng.integers(0, 255, (900, 1200, 3), np.uint8)))
    out = tmp_path / 'out'
    run = subprocess.Popen([sys.executable, str(ROOT / 'inference.py'), '--engine',
                            str(onnx_paths['fp32']), '--images', str(folder), '--out', str(out),
                            '--quiet', '--workers', '0', '--max_canvas', '64'],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = ''
    while ' -> ' not in first and run.poll() is None:  # the first picture is written
        first = run.stdout.readline()
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 2, first + stdout + stderr
    assert stderr.strip() == ('error: stopped by SIGTERM: no partial output was written; run the '
                              'command again to start over')
    assert ' -> ' in first and 'wrote' not in stdout  # stopped while it wrote its pictures
    assert _files_under(out) == []


def test_demo_refuses_a_negative_max_boxes(capsys, tmp_path, onnx_paths, valid_files):
    _written(tmp_path / 'a.jpg', valid_files['baseline.jpg'])
    code, _, err = _demo(capsys, onnx_paths, tmp_path / 'a.jpg', tmp_path / 'out',
                         '--max_boxes', '-1')
    assert code == 2 and err.strip() == 'error: --max_boxes must be 0 (draw none) or more, got -1'


def test_a_progressive_jpeg_is_estimated_with_its_coefficient_buffer(valid_files):
    """libjpeg holds every DCT coefficient of a progressive JPEG (2 bytes x 64 per 8x8 block and
    component: 6 bytes per pixel at 4:4:4) besides its output: measured 9.2 bytes per pixel in
    all, where a baseline JPEG takes 6.2; found behind a 60 kB EXIF block too."""
    header = image_header.header_of_bytes
    assert header(valid_files['baseline.jpg']).decode_bytes_per_pixel == 6.2
    assert header(valid_files['progressive.jpg']).decode_bytes_per_pixel == 9.2
    assert header(with_app1(valid_files['progressive.jpg'], b'\0' * 60000)) \
        .decode_bytes_per_pixel == 9.2


def test_opencvs_own_log_lines_stay_off_stderr(tmp_path):
    """OpenCV logged its decoders' complaints ([ WARN:0@0.01] ... PNG input buffer is
    incomplete; [ERROR:0@0.01] ... TIFFFetchDirectory) around the kit's one-line refusal."""
    image = np.full((40, 50, 3), 100, np.uint8)
    for suffix in ('.png', '.tif'):
        data = encode(suffix, image)
        _written(tmp_path / f'cut{suffix}', data[:len(data) // 2])
    code = ('import sys; sys.path.insert(0, sys.argv[1]); from centernet.preprocess import '
            'BadImageError, read_image\n'
            'for path in sys.argv[2:]:\n'
            '    try:\n'
            '        read_image(path)\n'
            '    except BadImageError as exc:\n'
            '        print(exc.reason)')
    done = subprocess.run([sys.executable, '-c', code, str(ROOT), str(tmp_path / 'cut.png'),
                           str(tmp_path / 'cut.tif')], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ['not a readable image (corrupt, truncated or unknown '
                                        'format)'] * 2
    assert done.stderr == ''


def test_the_demo_counts_a_picture_per_decoding_thread(capsys, tmp_path, onnx_paths,
                                                       valid_files, monkeypatch):
    """The demo's threads each decode a full-size picture at once: a folder of large photos is
    budgeted that way, and the message says what it assumed."""
    _written(tmp_path / 'a.png', valid_files['rgb.png'])  # 83 x 61
    one = len(valid_files['rgb.png']) + 83 * 61 * (6.2 + 2.0)  # file, decode, drawing
    monkeypatch.setattr(image_header, 'available_memory', lambda: int(1.5 * one))
    code, _, err = _demo(capsys, onnx_paths, tmp_path / 'a.png', tmp_path / 'out',
                         '--workers', '2')
    assert code == 2 and err.startswith(
        f'error: {tmp_path / "a.png"}: 83x61 pixels would need about {2 * one / 1e3:.0f} kB of '
        'memory to decode and draw, 2 pictures of this size at once (one per decoding thread, '
        '--workers 2) (') and 'shrink the picture, lower --workers, or free memory' in err
    code, _, err = _demo(capsys, onnx_paths, tmp_path / 'a.png', tmp_path / 'out',
                         '--workers', '1')
    assert code == 0, err
