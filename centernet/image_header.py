"""What an image file declares before it is decoded: its format, its size, and whether it may be
decoded here (PixelLimit). preprocess.decode_image asks this module first, so a small file that
declares 60000 x 60000 pixels is refused before OpenCV allocates 10 GB for it.

Sizes come from the `imagesize` library (JPEG with EXIF rotation, PNG, TIFF, BMP, WebP, JPEG 2000,
AVIF, PBM/PGM/PPM); the few formats OpenCV reads that it does not know (GIF beyond 32767 pixels,
PAM, PFM, Sun raster, Radiance HDR, a bare JPEG 2000 codestream) declare their size in a fixed
place, read here.
"""

import dataclasses
import io
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import imagesize

from .errors import UserError

# Every suffix OpenCV 5 reads (cv2.imread's list; OpenEXR is off in its wheels): the folder
# readers (the picture demo, INT8 calibration) take these files and no others.
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.jpe', '.png', '.bmp', '.dib', '.tif', '.tiff', '.webp',
                  '.gif', '.jp2', '.avif', '.pbm', '.pgm', '.ppm', '.pxm', '.pnm', '.pam', '.pfm',
                  '.sr', '.ras', '.hdr', '.pic')

# 250 MP: a 200 MP phone photo (16320 x 12240) and a 150 MP medium-format one (14204 x 10652)
# pass; a 30000 x 30000 decompression bomb (900 MP) does not. COCO's largest image is 0.4 MP.
DEFAULT_MAX_PIXELS = 250_000_000


class BadImageError(UserError):
    """An image file that cannot or may not be decoded (corrupt, truncated, not an image, too
    large). `path` names it, `reason` says why, without the path."""

    def __init__(self, path, reason):
        super().__init__(f'{path}: {reason}')
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int
    decode_bytes_per_pixel: float  # peak memory of cv2.imdecode(IMREAD_COLOR), output included

    @property
    def pixels(self):
        return self.width * self.height


# format -> peak bytes per pixel while cv2.imdecode(IMREAD_COLOR) decodes it (its 3-byte output
# included), measured on 4000 x 3000 files with opencv-python-headless 5.0 (VmHWM of a fresh
# process): 8- and 16-bit alike, as OpenCV converts row by row.
_DECODE_BYTES_PER_PIXEL = {
    'jpeg': 6.2, 'png': 6.2, 'tiff': 6.3, 'bmp': 6.2, 'netpbm': 6.2, 'pam': 6.2, 'sun': 6.2,
    'webp': 7.2, 'gif': 12.2, 'jp2': 15.7, 'hdr': 15.1, 'iso': 17.5, 'pfm': 24.3,
}
# A progressive JPEG is decoded from a buffer of all its DCT coefficients (2 bytes each, 64 per
# 8x8 block and component: 6 bytes per pixel at 4:4:4) before its 3-byte output: 9.2 measured
# at 4:4:4, the most any chroma subsampling needs.
_PROGRESSIVE_JPEG_BYTES_PER_PIXEL = 9.2
_JPEG_PROGRESSIVE_SOF = {0xC2, 0xC6, 0xCA, 0xCE}
_JPEG_OTHER_SOF = {0xC0, 0xC1, 0xC3, 0xC5, 0xC7, 0xC9, 0xCB, 0xCD, 0xCF}


def _format_of(head):
    """The format name of a file starting with `head` (64 bytes), as OpenCV's decoders tell them
    apart by their signatures; None when no decoder OpenCV has would take it."""
    if head[:3] == b'\xff\xd8\xff':
        return 'jpeg'
    if head[:8] == b'\x89PNG\r\n\x1a\n':
        return 'png'
    if head[:6] in (b'GIF87a', b'GIF89a'):
        return 'gif'
    if head[:4] in (b'II*\x00', b'MM\x00*', b'II+\x00', b'MM\x00+'):
        return 'tiff'
    if head[:2] == b'BM':
        return 'bmp'
    if head[:4] == b'RIFF' and head[8:12] == b'WEBP':
        return 'webp'
    if head[:12] == b'\x00\x00\x00\x0cjP  \r\n\x87\n' or head[:4] == b'\xff\x4f\xff\x51':
        return 'jp2'
    if head[4:8] == b'ftyp':
        return 'iso'   # AVIF (and HEIF, which this OpenCV does not read: decode says so)
    if re.match(rb'P[1-6]\s', head):
        return 'netpbm'
    if re.match(rb'P7\s', head):
        return 'pam'
    if re.match(rb'P[Ff]\s', head):
        return 'pfm'
    if head[:4] == b'\x59\xa6\x6a\x95':
        return 'sun'
    if head[:2] == b'#?':
        return 'hdr'
    return None


def _own_size(fmt, head):
    """(width, height) of the formats whose size this module reads itself; None for the others."""
    if fmt == 'gif':           # logical screen, unsigned (imagesize reads it signed)
        return struct.unpack('<HH', head[6:10])
    if fmt == 'jp2' and head[:4] == b'\xff\x4f\xff\x51':   # codestream SIZ: extent - origin
        x, y, x0, y0 = struct.unpack('>4I', head[8:24])
        return x - x0, y - y0
    if fmt == 'sun':
        return struct.unpack('>II', head[4:12])
    if fmt == 'pam':
        width, height = (re.search(rb'\n' + key + rb'\s+(\d+)', head)
                         for key in (b'WIDTH', b'HEIGHT'))
        return (int(width[1]), int(height[1])) if width and height else (-1, -1)
    if fmt == 'pfm':
        found = re.match(rb'P[Ff]\s+(\d+)\s+(\d+)', head)
        return (int(found[1]), int(found[2])) if found else (-1, -1)
    if fmt == 'hdr':           # the resolution line after the header: "-Y height +X width"
        found = re.search(rb'\n\n[-+]Y (\d+) [-+]X (\d+)', head)
        return (int(found[2]), int(found[1])) if found else (-1, -1)
    return None


_HEAD_BYTES = 4096  # enough for the PAM and HDR text headers; the others need far less


def read_header(file):
    """ImageHeader of an open binary file (position 0), or None when no decoder OpenCV has
    takes it or its size cannot be read. Reads only what the header needs."""
    head = file.read(_HEAD_BYTES)
    fmt = _format_of(head[:64])
    if fmt is None:
        return None
    try:
        size = _own_size(fmt, head)
    except struct.error:  # a header cut short
        return None
    if size is None:
        file.seek(0)
        size = imagesize.get(file)  # a file object: imagesize never opens a path or URL itself
    width, height = size
    if width <= 0 or height <= 0:
        return None
    per_pixel = _DECODE_BYTES_PER_PIXEL[fmt]
    if fmt == 'jpeg' and _jpeg_is_progressive(file):
        per_pixel = _PROGRESSIVE_JPEG_BYTES_PER_PIXEL
    return ImageHeader(fmt, width, height, per_pixel)


def _jpeg_is_progressive(file, most_segments=1000):
    """Whether the JPEG's frame header (SOFn) is a progressive one, walking the marker segments
    by their lengths from the start of the file (an EXIF block before it can be 64 kB long)."""
    file.seek(2)
    for _ in range(most_segments):
        marker = file.read(4)
        if len(marker) < 4 or marker[0] != 0xFF:
            return False
        if marker[1] in _JPEG_PROGRESSIVE_SOF:
            return True
        if marker[1] in _JPEG_OTHER_SOF or marker[1] in (0xDA, 0xD9):  # SOS, EOI: no frame
            return False
        file.seek(int.from_bytes(marker[2:], 'big') - 2, io.SEEK_CUR)
    return False


def header_of_bytes(data):
    return read_header(io.BytesIO(data))


# In scan data a 0xFF byte is followed by 0x00 (stuffing), a restart marker (RST0-7) or another
# 0xFF (fill); anything else is the marker that ends the scan.
_END_OF_SCAN = re.compile(rb'\xff[^\x00\xd0-\xd7\xff]')


def jpeg_is_complete(data):
    """True when the JPEG's own structure reaches its end-of-image marker, False when the data
    stops first (a cut-off file, which libjpeg would decode with grey rows and only a warning);
    None when the bytes after SOI are not laid out as a JPEG (libjpeg then judges them).

    Walks the marker segments by their lengths, and each scan's entropy-coded data to the next
    marker: bytes inside a segment (an EXIF thumbnail) or after EOI (a phone's motion-photo
    video) cannot fool it, as they fooled a search for the last SOS and EOI.
    """
    position, end = 2, len(data)
    while position < end:
        if data[position] != 0xFF:
            return None
        while position < end and data[position] == 0xFF:
            position += 1
        if position >= end:
            return False
        marker = data[position]
        position += 1
        if marker == 0xD9:                                   # EOI
            return True
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:         # TEM, RSTn: no length field
            continue
        if position + 2 > end:
            return False
        position += int.from_bytes(data[position:position + 2], 'big')
        if marker == 0xDA:                                   # SOS: the scan's data follows
            found = _END_OF_SCAN.search(data, position)
            if found is None:
                return False
            position = found.start()
    return False


def available_memory():
    """Bytes of memory this process can still take: MemAvailable, or what is left under its
    cgroup's limit when that is lower (a container); None where unknown (not Linux)."""
    try:
        with open('/proc/meminfo') as meminfo:
            available = next(int(line.split()[1]) * 1024 for line in meminfo
                             if line.startswith('MemAvailable:'))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    room = _cgroup_room()
    return available if room is None else min(available, room)


def _cgroup_room(membership='/proc/self/cgroup', mounts='/sys/fs/cgroup'):
    """Bytes left under this process's cgroup memory limit (v2 or v1), or None: no limit, or
    none to be read."""
    try:
        lines = Path(membership).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, group = line.split(':', 2)
        if controllers == '':
            names, root = ('memory.max', 'memory.current'), Path(mounts)
        elif 'memory' in controllers.split(','):
            names, root = ('memory.limit_in_bytes', 'memory.usage_in_bytes'), Path(mounts, 'memory')
        else:
            continue
        for folder in (root / group.lstrip('/'), root):  # a container sees its own at the root
            try:
                limit, used = [(folder / name).read_text().strip() for name in names]
                return None if limit == 'max' else int(limit) - int(used)
            except (OSError, ValueError):
                continue
    return None


def _amount(count):
    if count >= 1e8:
        return f'{count / 1e9:.1f} GB'
    return f'{count / 1e6:.0f} MB' if count >= 1e6 else f'{count / 1e3:.0f} kB'


def _choices(*options):
    """'a, b, or c' of the options given (None and False left out)."""
    given = [option for option in options if option]
    return given[0] if len(given) == 1 else ', '.join(given[:-1]) + ', or ' + given[-1]


@dataclass(frozen=True)
class PixelLimit:
    """Which pictures may be decoded: at most `max_pixels`, and no more memory than is available.

    The memory a picture needs is its file, its decode (per format), and `after_decode` bytes per
    pixel for what the caller does with it next (a full-size canvas through the network in COCO
    evaluation; a drawing in the picture demo; nothing for a server that only decodes), times
    `copies`: how many pictures of this size the caller may hold at once (a batch of one canvas
    size; one per decoding thread), which `copies_why` says in the message and `fewer_with`
    (an option) lowers. `task` says what follows the decode, and `raise_with` names how the user
    of the command at hand raises the limit (None: only shrinking the picture is suggested).
    `max_side` refuses a longer side, for the reason `max_side_why` gives (the demo writes JPEG).
    `other_advice` is what else the user can do, in the terms of the command at hand.
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    after_decode: float = 0.0
    task: str = 'decode'
    raise_with: str = None
    check_memory: bool = True
    copies: int = 1
    copies_why: str = ''
    fewer_with: str = None
    max_side: int = None
    max_side_why: str = ''
    other_advice: str = None

    def needed_bytes(self, header, file_bytes=0):
        return self.copies * (file_bytes + header.pixels * (header.decode_bytes_per_pixel
                                                            + self.after_decode))

    def check(self, path, header, file_bytes=0):
        """Raise BadImageError when the picture `header` describes may not be decoded."""
        if self.max_side is not None and max(header.width, header.height) > self.max_side:
            raise BadImageError(path, f'{header.width}x{header.height} pixels: a side over '
                                f'{self.max_side} pixels, {self.max_side_why}: shrink the picture')
        needed = self.needed_bytes(header, file_bytes)
        megapixels = f' ({header.pixels / 1e6:.1f} MP)' if header.pixels >= 1e5 else ''
        together = (f', {self.copies} pictures of this size at once ({self.copies_why})'
                    if self.copies > 1 else '')
        each = ' each' if self.copies > 1 else ''
        what = (f'{header.width}x{header.height} pixels{megapixels} would need about '
                f'{_amount(needed)} of memory to {self.task}{together} '
                f'({needed / self.copies / header.pixels:.0f} bytes per pixel{each})')
        if header.pixels > self.max_pixels:
            advice = _choices('shrink the picture', self.other_advice, self.raise_with and (
                f'raise {self.raise_with} if this machine has the memory'))
            raise BadImageError(path, f'{what}; that is over the limit of '
                                f'{self.max_pixels / 1e6:g} MP: {advice}')
        available = available_memory() if self.check_memory else None
        if available is not None and needed > available:
            advice = _choices('shrink the picture', self.other_advice,
                              self.copies > 1 and self.fewer_with and f'lower {self.fewer_with}',
                              'free memory')
            raise BadImageError(path, f'{what}, more than the {_amount(available)} available '
                                f'now: {advice}')

    def in_batch(self, count):
        """This limit for a picture run with `count` others of its canvas size at once."""
        if count <= 1 or self.copies_why:  # the caller already counted what is in flight
            return self
        return dataclasses.replace(self, copies=count, copies_why='the images of its batch, '
                                   'which share its canvas size')
