#!/usr/bin/env python3
"""Print the folder of the bundled demo's scenes (the trained stand-in's own), generating them once.

    python3 demo_scenes.py test                     the 500 held-out test scenes (COCO layout)
    python3 demo_scenes.py train --calib_images 128 what INT8 calibration on 128 and its gate read

scripts/_common.sh runs it when neither DATASETS_DIR nor a checkpoint is given; DEMO_CACHE moves
the cache (centernet/standin_demo.py). With the scenes already there it only prints the folder.
"""

import argparse

from common import ArgumentParser, run_main


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected a whole number >= 1, got {text}')
    return value


def parse_args(argv):
    from centernet.standin_scenes import SPLIT_SEEDS
    parser = ArgumentParser(description=__doc__.splitlines()[0],
                            epilog='\n'.join(__doc__.splitlines()[2:]))
    parser.add_argument('split', choices=sorted(SPLIT_SEEDS))
    size = parser.add_mutually_exclusive_group()
    size.add_argument('--count', type=_positive, help='how many scenes (default: the whole split)')
    size.add_argument('--calib_images', type=_positive,
                      help='as many as INT8 calibration of N images and its gate read')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from centernet.standin_demo import scenes_for
    print(scenes_for(args.split, args.count, args.calib_images))
    return 0


if __name__ == '__main__':
    run_main(main)
