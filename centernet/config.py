"""Read an mmdet-format CenterNet config into the few numbers the deployment needs.

The file is read as data, never run (config_file.ConfigReader: mmengine's format and merge
rules, without mmengine's exec of the file). Everything that could silently change the results
and that this kit does not implement (DCN, another detector, another padding rule) is refused
here, with the reason.
"""

import math
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

# ResNet depth -> blocks per stage, for the BasicBlock ResNets mmdet builds.
RESNET_BASIC_BLOCK_STAGES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


@dataclass(frozen=True)
class CenterNetSpec:
    """What the native model, preprocessing and decode take from the config."""

    num_classes: int
    depth: int
    neck_in_channels: int
    deconv_filters: tuple
    deconv_kernels: tuple
    head_in_channels: int
    head_feat_channels: int
    topk: int
    local_maximum_kernel: int
    mean: tuple              # RGB order, applied after the BGR->RGB swap, as DetDataPreprocessor does
    std: tuple
    bgr_to_rgb: bool
    pad_or: int              # canvas side = (side | pad_or) + pad_add
    pad_add: int
    canvas_fill: tuple       # raw (pre-normalisation) value of the canvas outside the image, BGR

    @classmethod
    def from_dict(cls, fields):
        """Back from JSON (ONNX metadata, the engine's sidecar): lists become tuples again."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})

    @property
    def stride(self):
        """Output stride: 32 for the backbone, halved by each deconv stage."""
        return 32 // (2 ** len(self.deconv_filters))

    def canvas_side(self, side):
        """mmdet RandomCenterCropPad test mode, `test_pad_mode=['logical_or', 31]`."""
        return (side | self.pad_or) + self.pad_add


def _get(cfg, dotted, default=None):
    node = cfg
    for key in dotted.split('.'):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def _require(condition, message):
    if not condition:
        raise UserError(message)


def _whole(name, field, value, minimum):
    """`value` as an int, refused in one line unless it is a whole number >= `minimum`."""
    from .config_file import shown
    fits = (isinstance(value, int) and not isinstance(value, bool)
            or isinstance(value, float) and value.is_integer())
    _require(fits and value >= minimum,
             f'{name}: {field}={shown(value)} must be a whole number >= {minimum}')
    return int(value)


def _numbers(name, field, values, nonzero=False):
    """Three finite numbers, one per colour channel (none zero when `nonzero`)."""
    from .config_file import shown
    what = 'non-zero numbers' if nonzero else 'numbers'
    _require(isinstance(values, (list, tuple)) and len(values) == 3
             and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
             and all(math.isfinite(v) and (v != 0 or not nonzero) for v in values),
             f'{name}: {field}={shown(values)} must be 3 finite {what}, one per colour channel')
    return tuple(float(v) for v in values)


def load_spec(path) -> CenterNetSpec:
    """Parse `path` (an mmdet config file) and check it describes a model this kit can run."""
    from .config_file import read_config

    path = Path(path)
    _require(path.is_file(), f'config file {path} not found: pass --cfg '
             'centernet_r18_8xb16-crop512-140e_coco.py (it ships with this repository)')
    return spec_from_config(read_config(path), str(path))


def spec_from_config(cfg, name='config') -> CenterNetSpec:
    """The spec from a config's variables (plain dicts; an mmengine Config is converted)."""
    if hasattr(cfg, 'to_dict'):  # mmengine Config -> plain nested dicts and lists
        cfg = cfg.to_dict()
    try:
        return _spec(cfg, name)
    except (AttributeError, TypeError, ValueError, KeyError, OverflowError) as exc:
        # a field of another type (a list where a dict belongs); the exception's text may hold
        # a value of the file, which can be a megabyte long: it is shortened
        detail = str(exc)
        detail = detail if len(detail) <= 80 else detail[:77] + '...'
        raise UserError(f'{name}: a model or test pipeline field has a value this kit cannot '
                        f'read ({type(exc).__name__}: {detail}); is it an mmdet CenterNet '
                        'config?') from None


def _spec(cfg, name):
    from .config_file import shown
    model = _get(cfg, 'model')
    _require(isinstance(model, dict), f'{name} has no `model` dict: is it an mmdet config?')
    kind = model.get('type')
    _require(kind == 'CenterNet', f'{name} describes a {shown(kind)} model; only '
             'type=\'CenterNet\' is supported')

    backbone = model.get('backbone', {})
    _require(backbone.get('type') == 'ResNet' and backbone.get('depth') in RESNET_BASIC_BLOCK_STAGES,
             f'{name}: backbone {shown(backbone.get("type")).strip(chr(39))}-'
             f'{shown(backbone.get("depth"))} is '
             f'not supported; use ResNet with depth in {sorted(RESNET_BASIC_BLOCK_STAGES)}')
    for key, expected in (('style', 'pytorch'), ('deep_stem', False), ('in_channels', 3),
                          ('base_channels', 64), ('strides', (1, 2, 2, 2)),
                          ('dilations', (1, 1, 1, 1)), ('dcn', None)):
        value = backbone.get(key, expected)
        if isinstance(value, list):
            value = tuple(value)
        _require(value == expected, f'{name}: backbone {key}={shown(value)} is not supported '
                 f'(only {expected!r})')

    neck = model.get('neck', {})
    _require(neck.get('type') == 'CTResNetNeck', f'{name}: neck {shown(neck.get("type"))} is '
             'not supported; only CTResNetNeck')
    _require(not neck.get('use_dcn', True), f'{name}: neck use_dcn=True (deformable convolution) '
             'is not supported: it needs mmcv\'s compiled ops and has no plain ONNX/TensorRT form. '
             'Use the no-DCN config (use_dcn=False)')

    head = model.get('bbox_head', {})
    _require(head.get('type') == 'CenterNetHead', f'{name}: bbox_head {shown(head.get("type"))} '
             'is not supported; only CenterNetHead')
    test_cfg = model.get('test_cfg') or {}
    _require('nms' not in test_cfg, f'{name}: test_cfg.nms is not supported (mmdet\'s CenterNet '
             'test setting has none)')

    pre = model.get('data_preprocessor', {})
    _require(pre.get('pad_size_divisor', 1) == 1 and pre.get('pad_value', 0) == 0,
             f'{name}: data_preprocessor pad_size_divisor/pad_value other than 1/0 is not supported')

    pad = _find_center_crop_pad(cfg, name)
    filters = tuple(_whole(name, 'model.neck.num_deconv_filters', v, 1)
                    for v in neck.get('num_deconv_filters', (256, 128, 64)))
    kernels = tuple(neck.get('num_deconv_kernels', (4, 4, 4)))
    _require(len(filters) == len(kernels) and all(k == 4 for k in kernels),
             f'{name}: num_deconv_kernels={shown(kernels)} is not supported (only 4 per '
             'num_deconv_filters, as mmdet\'s CenterNet)')
    _require(1 <= len(filters) <= 5, f'{name}: model.neck.num_deconv_filters needs 1 to 5 stages (each '
             f'doubles the backbone\'s 1/32 resolution), got {len(filters)}')
    kernel = _whole(name, 'model.test_cfg.local_maximum_kernel',
                    test_cfg.get('local_maximum_kernel', 3), 1)
    _require(kernel % 2 == 1, f'{name}: model.test_cfg.local_maximum_kernel={kernel} must be odd: '
             'mmdet\'s local-maximum max-pool keeps the heatmap\'s size only for an odd kernel')
    topk = _whole(name, 'model.test_cfg.topk', test_cfg.get('topk', 100), 1)
    stride = 32 // 2 ** len(filters)
    positions = (_whole(name, 'model.bbox_head.num_classes', head.get('num_classes', 80), 1)
                 * (((1 | pad['pad_or']) + pad['pad_add']) // stride) ** 2)
    _require(topk <= positions, f'{name}: model.test_cfg.topk={topk} is more than the {positions} '
             'heatmap positions of the smallest canvas: mmdet\'s torch.topk fails on a small '
             'picture with it (mmdet\'s CenterNet keeps 100)')
    head_in = _whole(name, 'model.bbox_head.in_channels', head.get('in_channels', filters[-1]), 1)
    _require(head_in == filters[-1], f'{name}: model.bbox_head.in_channels={head_in} must be the '
             f'neck\'s last num_deconv_filters, {filters[-1]}: the head reads the neck\'s output')
    return CenterNetSpec(
        num_classes=_whole(name, 'model.bbox_head.num_classes', head.get('num_classes', 80), 1),
        depth=int(backbone['depth']),
        neck_in_channels=_whole(name, 'model.neck.in_channels', neck.get('in_channels', 512), 1),
        deconv_filters=filters,
        deconv_kernels=kernels,
        head_in_channels=head_in,
        head_feat_channels=_whole(name, 'model.bbox_head.feat_channels', head.get('feat_channels', 64),
                                  1),
        topk=topk,
        local_maximum_kernel=kernel,
        mean=_numbers(name, 'model.data_preprocessor.mean', pre.get('mean', (0.0, 0.0, 0.0))),
        std=_numbers(name, 'model.data_preprocessor.std', pre.get('std', (1.0, 1.0, 1.0)),
                     nonzero=True),
        bgr_to_rgb=bool(pre.get('bgr_to_rgb', False)),
        pad_or=pad['pad_or'],
        pad_add=pad['pad_add'],
        canvas_fill=pad['fill'],
    )


def _find_center_crop_pad(cfg, name):
    from .config_file import shown
    pipeline = (_get(cfg, 'test_dataloader.dataset.pipeline')
                or _get(cfg, 'test_pipeline') or [])
    steps = [step for step in pipeline if step.get('type') == 'RandomCenterCropPad']
    _require(len(steps) == 1, f'{name}: the test pipeline needs exactly one RandomCenterCropPad '
             '(test_mode=True); this kit implements that padding and no resize')
    step = steps[0]
    for other in pipeline:
        _require(other.get('type') in ('LoadImageFromFile', 'RandomCenterCropPad',
                                       'LoadAnnotations', 'PackDetInputs'),
                 f'{name}: test pipeline step {shown(other.get("type"))} is not supported')
    mode = step.get('test_pad_mode')
    _require(step.get('test_mode') and isinstance(mode, (list, tuple)) and len(mode) == 2
             and mode[0] == 'logical_or', f'{name}: RandomCenterCropPad test_pad_mode='
             f'{shown(mode)} is not supported; only [\'logical_or\', N] with test_mode=True')
    pad_or = _whole(name, 'RandomCenterCropPad test_pad_mode N', mode[1], 0)
    _require(pad_or & (pad_or + 1) == 0, f'{name}: RandomCenterCropPad test_pad_mode '
             f'[\'logical_or\', {pad_or}] is not supported: N must be 2^k - 1 (such as 31), so '
             'that the canvas side (side | N) + test_pad_add_pix steps by N + 1')
    pad_add = _whole(name, 'RandomCenterCropPad test_pad_add_pix', step.get('test_pad_add_pix', 0),
                     0)
    # With to_rgb=True mmdet reverses the mean list (to BGR) and fills the canvas with it.
    fill = list(_numbers(name, 'RandomCenterCropPad mean', step.get('mean', (0, 0, 0))))
    if step.get('to_rgb'):
        fill = fill[::-1]
    _require(all(v == int(v) and 0 <= v <= 255 for v in fill),
             f'{name}: RandomCenterCropPad mean={fill} must be whole numbers 0..255 (the canvas '
             'is uint8)')
    return dict(pad_or=pad_or, pad_add=pad_add, fill=tuple(int(v) for v in fill))
