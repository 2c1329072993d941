#!/usr/bin/env python3
"""Fetch the CenterNet-R18 checkpoint and COCO val2017, verify them, unpack them in place.

    python3 prepare.py --datasets $DATASETS_DIR [--only {checkpoint,coco,all}]

Writes checkpoints/centernet_resnet18_140e_coco_20210705_093630-bb5b3bf7.pth and
DATASETS_DIR/annotations/instances_val2017.json + DATASETS_DIR/images/val2017/. Interrupted
downloads resume on the next run; whatever is already there and verified is left alone.
"""

import os

from common import ArgumentParser, run_main

DEFAULT_CHECKPOINT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'checkpoints')


def parse_args(argv):
    from centernet import prepare as p
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', choices=('checkpoint', 'coco', 'all'), default='all',
                        help='what to prepare (default all)')
    parser.add_argument('--checkpoint_dir', default=DEFAULT_CHECKPOINT_DIR,
                        help='folder for the checkpoint (default checkpoints/ in the repo)')
    parser.add_argument('--datasets', default=os.environ.get('DATASETS_DIR'),
                        help='folder that gets annotations/ and images/ (default $DATASETS_DIR)')
    parser.add_argument('--openmmlab_mirror',
                        default=os.environ.get(p.OPENMMLAB_MIRROR_ENV, p.OPENMMLAB_MIRROR),
                        help=f'base URL for the checkpoint (default ${p.OPENMMLAB_MIRROR_ENV} '
                             f'or {p.OPENMMLAB_MIRROR})')
    parser.add_argument('--coco_mirror', default=os.environ.get(p.COCO_MIRROR_ENV, p.COCO_MIRROR),
                        help=f'base URL for the COCO zips (default ${p.COCO_MIRROR_ENV} '
                             f'or {p.COCO_MIRROR})')
    parser.add_argument('--keep_archives', action='store_true',
                        help='keep val2017.zip and annotations_trainval2017.zip after unpacking')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from centernet.prepare import prepare
    return prepare(args)


if __name__ == '__main__':
    run_main(main)
