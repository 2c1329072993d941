"""The bundled demo's data: the trained stand-in's generated scenes, made once into a cache.

When a script is given neither COCO (DATASETS_DIR) nor a checkpoint, it runs the bundled demo
(scripts/_common.sh): the stand-in CenterNet-R18 that tools/train_standin.py trained on
centernet.standin_scenes (test AP 0.6506 on ONNX Runtime FP32, docs/int8.md), evaluated on its
held-out test split and, for INT8, calibrated on the first images of its train split. The scenes
are a pure function of their split's seed, so they are generated, not shipped:

    $DEMO_CACHE (default $XDG_CACHE_HOME/centernet-kit, else ~/.cache/centernet-kit)
        standin-<generator digest>/test-500/    annotations/instances_val2017.json + images/val2017/
        standin-<generator digest>/train-136/   (CALIB_IMAGES + the INT8 gate's images)

A folder is written under a temporary name and renamed when complete (fileio.atomic_folder), so
a Ctrl-C, a kill or a full disk never leaves one that is taken for done; the digest of the
generator's source in the path means that scenes an older generator wrote are never read.

    python3 demo_scenes.py SPLIT [--count N | --calib_images N]   prints the folder (the scripts)
"""

import hashlib
import os
from pathlib import Path

from . import standin_scenes
from .errors import UserError
from .fileio import atomic_folder

CACHE_ENV = 'DEMO_CACHE'
ANNOTATIONS = Path('annotations') / 'instances_val2017.json'


def cache_root():
    """Where the demo's scenes go: $DEMO_CACHE, else the XDG cache folder's centernet-kit/."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base) / 'centernet-kit'


def generator_digest():
    """The first 12 hex digits of the scene generator's source: other code, other scenes."""
    return hashlib.sha256(Path(standin_scenes.__file__).read_bytes()).hexdigest()[:12]


def scenes(split, count, root=None):
    """The folder holding the first `count` scenes of `split` in COCO layout, generated now if
    it is not there yet (the same files as standin_scenes.write_split)."""
    root = Path(root or cache_root())
    folder = root / f'standin-{generator_digest()}' / f'{split}-{count}'
    if (folder / ANNOTATIONS).is_file():
        return folder
    move = f'{CACHE_ENV}=DIR puts the demo\'s scenes elsewhere'
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f'cannot make the folder for the demo\'s scenes {folder.parent}: '
                        f'{exc.strerror}; {move}') from None
    try:
        with atomic_folder(folder) as tmp:
            standin_scenes.write_scenes(tmp, split, count)
    except UserError as exc:  # a full disk, a read-only folder: say how to move the cache
        raise UserError(f'{exc}; {move}') from None
    return folder


def scenes_for(split, count=None, calib_images=None, root=None):
    """scenes() of `split`: `count` scenes, or as many as INT8 calibration of `calib_images`
    images and its precision gate read, or the whole split."""
    from .calibration_set import GATE_IMAGES
    count = (calib_images + GATE_IMAGES if calib_images
             else count or standin_scenes.SPLIT_SIZES[split])
    return scenes(split, count, root)
