#!/usr/bin/env python3
"""Train the stand-in CenterNet-R18 on generated scenes (centernet.standin_scenes), on the CPU.

    nice -n 10 python3 tools/train_standin.py --data /tmp/standin --out checkpoints/standin

Writes the train / val / test splits in COCO layout under --data (from their fixed seeds), trains
the kit's own model (centernet.model.build_model) from scratch with mmdet's CenterNet losses
(centernet.training), evaluates on val every --eval_every iterations, and keeps the best as an
mmdet-format checkpoint (`{'meta': ..., 'state_dict': ...}`, FP16 tensors) that export.py and
inference.py --backend torch take unchanged: OUT/standin_centernet.pth. The test split is never
looked at here; report it with inference.py. Deterministic: the same seeds and flags give the
same weights on the same torch build and thread count.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import DEFAULT_CONFIG, run_main  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data', required=True, help='folder for the generated splits')
    parser.add_argument('--out', default='checkpoints/standin', help='checkpoint folder')
    parser.add_argument('--cfg', default=DEFAULT_CONFIG)
    parser.add_argument('--iterations', type=int, default=12000)
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--lr', type=float, default=2e-3)
    parser.add_argument('--weight_decay', type=float, default=1e-4)
    parser.add_argument('--warmup', type=int, default=100, help='linear warm-up iterations')
    parser.add_argument('--eval_every', type=int, default=300)
    parser.add_argument('--seed', type=int, default=0, help='initialisation and batch order')
    parser.add_argument('--threads', type=int, default=2,
                        help='torch threads (default 2, as the committed stand-in was trained: '
                        '0.19 s an iteration on an idle 2-core machine, one thread 0.42 s; give '
                        'it the machine, since threads that share cores wait on each other, and '
                        'the weights depend on the thread count)')
    parser.add_argument('--stop_at', help='UTC HH:MM: stop (keeping the best so far) at this time')
    return parser.parse_args(argv)


class SceneSet:
    """A generated split in memory: decoded images and their boxes (xyxy) and label indices."""

    def __init__(self, folder, classes):
        from centernet.dataset import CocoImageSet
        from centernet.preprocess import read_image
        images = CocoImageSet(folder, classes)
        label_of = {cat: index for index, cat in enumerate(images.cat_ids)}
        self.images, self.boxes, self.labels = [], [], []
        for record in images.records:
            anns = images.coco.imgToAnns[record.image_id]
            self.images.append(read_image(record.path))
            self.boxes.append(np.array([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
                                         a['bbox'][1] + a['bbox'][3]] for a in anns],
                                       np.float32).reshape(-1, 4))
            self.labels.append(np.array([label_of[a['category_id']] for a in anns], np.int64))

    def batch(self, indices, canvas, flips):
        """Canvases (B, H, W, 3) uint8 pasted as inference pastes them, boxes in canvas pixels."""
        first = self.images[indices[0]]
        height, width = canvas.shape(*first.shape[:2])
        canvases = np.empty((len(indices), height, width, 3), np.uint8)
        boxes, labels = [], []
        for row, (index, flip) in enumerate(zip(indices, flips)):
            image, image_boxes = self.images[index], self.boxes[index].copy()
            if flip:
                image = image[:, ::-1]
                image_boxes[:, [0, 2]] = image.shape[1] - image_boxes[:, [2, 0]]
            top, _, left, _ = canvas.paste(image, canvases[row])
            boxes.append(torch.from_numpy(image_boxes + np.float32([left, top, left, top])))
            labels.append(torch.from_numpy(self.labels[index]))
        return torch.from_numpy(canvases), boxes, labels


def evaluate(model, folder, classes):
    """COCO AP of `model` (FP32, in eval mode) on a split, as inference.py computes it."""
    from centernet.backends.torch_backend import TorchBackend
    from centernet.pipeline import folder_ap
    return folder_ap(TorchBackend.for_model(model, classes, device='cpu'), folder, 50)[0]


def save_checkpoint(model, path, meta):
    """mmdet's layout; float tensors as FP16 (half the bytes; the loader casts them back)."""
    from centernet.fileio import atomic_path
    state = {k: v.detach().half() if v.is_floating_point() else v.detach()
             for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({'meta': meta, 'state_dict': state}, tmp)


def train(args):
    from coco_labels import COCO_CLASSES
    from centernet import standin_scenes as scenes
    from centernet.config import load_spec
    from centernet.model import build_model
    from centernet.preprocess import CenterCanvas
    from centernet.training import center_targets, centernet_loss, init_head

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data, out = Path(args.data), Path(args.out)
    for split, count in scenes.SPLIT_SIZES.items():
        if not (data / split / 'annotations' / 'instances_val2017.json').is_file():
            scenes.write_split(data, split, count)
    spec = load_spec(args.cfg)
    train_set = SceneSet(data / 'train', COCO_CLASSES)
    canvas = CenterCanvas(spec)
    model = build_model(spec)
    init_head(model.bbox_head)
    model.train()
    # fused: one kernel for all parameters; the per-tensor loop took a quarter of an iteration
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay,
                                  fused=True)

    def learning_rate(step):  # linear warm-up, then cosine to 1% (iteration-based: reproducible)
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.iterations - args.warmup)
        return args.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))

    order = np.random.default_rng(args.seed)
    log = out / 'train_log.jsonl'
    out.mkdir(parents=True, exist_ok=True)
    best, start = -1.0, time.time()
    stop_at = None
    if args.stop_at:
        hour, minute = map(int, args.stop_at.split(':'))
        now = time.gmtime()
        stop_at = start + ((hour * 60 + minute) - (now.tm_hour * 60 + now.tm_min)) * 60 - now.tm_sec
    meta_base = dict(dataset_meta=dict(classes=list(COCO_CLASSES)),
                     standin=dict(split_seeds=dict(scenes.SPLIT_SEEDS),
                                  split_sizes=dict(scenes.SPLIT_SIZES),
                                  seed=args.seed, iterations=args.iterations, batch=args.batch,
                                  lr=args.lr, torch=str(torch.__version__), threads=args.threads))
    for step in range(args.iterations):
        for group in optimizer.param_groups:
            group['lr'] = learning_rate(step)
        indices = order.integers(0, len(train_set.images), args.batch)
        canvases, boxes, labels = train_set.batch(indices, canvas, order.random(args.batch) < 0.5)
        heads = model(canvases)
        targets = center_targets(boxes, labels, spec.num_classes, heads[0].shape[2:],
                                 canvases.shape[1:3])
        loss, parts = centernet_loss(heads, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 35)  # the config's clip_grad
        optimizer.step()
        last = step + 1 == args.iterations or (stop_at and time.time() > stop_at)
        entry = dict(step=step + 1, seconds=round(time.time() - start, 1), loss=loss.item(),
                     lr=learning_rate(step), **parts)
        if (step + 1) % args.eval_every == 0 or last:
            model.eval()
            entry['val_ap'] = evaluate(model, data / 'val', COCO_CLASSES)
            model.train()
            if entry['val_ap'] > best:
                best = entry['val_ap']
                save_checkpoint(model, out / 'standin_centernet.pth',
                                dict(meta_base, standin=dict(meta_base['standin'], step=step + 1,
                                                             val_ap=best)))
            save_checkpoint(model, out / 'standin_centernet_last.pth',
                            dict(meta_base, standin=dict(meta_base['standin'], step=step + 1,
                                                         val_ap=entry['val_ap'])))
        with log.open('a') as f:
            f.write(json.dumps(entry) + '\n')
        if (step + 1) % 10 == 0 or 'val_ap' in entry:
            print(json.dumps(entry), flush=True)
        if last:
            break
    print(f'best val AP {best:.3f}; checkpoint {out / "standin_centernet.pth"}')
    return 0


def main(argv=None):
    return train(parse_args(argv))


if __name__ == '__main__':
    run_main(main)
