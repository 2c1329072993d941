"""Which images INT8 calibration and its precision gate read, and the memory reading them takes.

    calibration_records  the first N images of a COCO-layout folder or of a folder of images
    GATE_IMAGES          the gate then judges the images that follow those (int8_quantize)
    calibration_limit    the preprocess.PixelLimit both readers apply: onnxruntime's calibration
                         keeps every intermediate tensor of a batch, about 100 times a picture's
                         own bytes, so one large photo in the folder could take gigabytes

Cheap to import (no torch, no onnx): the scripts' cache of the bundled demo's scenes
(standin_demo) and export.py's reuse decision read it.
"""

from pathlib import Path

from .errors import UserError, option_name

GATE_IMAGES = 8
CALIB_BATCH = 4  # images per calibration batch (one canvas size), as the gate batches them
# Peak bytes per picture pixel beyond its decode while onnxruntime's quantize_static calibrates
# on it (tools/benchmark_memory.py --int8: one 0.75 MP and one 3 MP picture, the slope; 2 shared
# cores): minmax 663, the histogram methods 805 (entropy) and 807 (percentile), rounded up 5 %.
# The gate's run on the same pictures (PyTorch FP32 and ONNX Runtime INT8) peaks lower.
CALIBRATION_BYTES_PER_PIXEL = {'minmax': 700.0, 'entropy': 850.0, 'percentile': 850.0}


def calibration_records(calib_dir, limit):
    """The first `limit` images of a COCO-layout folder (its annotation file's order; its
    categories do not matter) or of a folder of images (sorted by name)."""
    from .dataset import ANNOTATION_FILE, CocoImageSet, FolderImageSet
    folder = Path(calib_dir)
    if not folder.is_dir():
        raise UserError(f'--calib {folder}: not a folder; pass a COCO-layout folder (as '
                        '--datasets) or a folder of images')
    images = CocoImageSet(folder, None) if (folder / ANNOTATION_FILE).is_file() \
        else FolderImageSet(folder)
    if limit < 1:
        raise UserError(f'--calib_images must be at least 1, got {limit}')
    return images.records[:limit]


def calibration_limit(method):
    """What a calibration picture (or one the gate reads) may be: its decode and `method`'s
    calibration per pixel, for each picture of its batch, must fit the memory available."""
    from .preprocess import PixelLimit
    elsewhere = option_name('calibrate on other pictures (--calib DIR) or on fewer, which it '
                            'reads first (--calib_images N)',
                            'calibrate on other pictures (CALIB_DIR=) or on fewer, which it '
                            'reads first (CALIB_IMAGES=)')
    return PixelLimit(after_decode=CALIBRATION_BYTES_PER_PIXEL[method],
                      task=f'calibrate INT8 ({method}) on it', other_advice=elsewhere)
