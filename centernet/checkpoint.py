"""Load mmdet checkpoints safely (weights only) and strictly (every key, every shape).

mmdet itself loads with strict=False and a full unpickler; here a checkpoint is tensors and plain
data or it is refused, and a key or shape that does not fit is an error that names it. What torch's
own load_state_dict accepts is accepted too: a 1-element tensor for a 0-dim buffer (BatchNorm's
`num_batches_tracked` as PyTorch before 0.4 saved it), and a state without `num_batches_tracked`
(BatchNorm fills it in for pre-0.4.1 state; it only counts training steps, eval never reads it).
"""

import re
from pathlib import Path

import torch

from .errors import UserError
from .fileio import sha256_of  # noqa: F401 (checkpoint.sha256_of, as its callers know it)

# OpenMMLab's publish step names files `<name>-<first 8 hex digits of the file's sha256>.pth`.
_SHA256_PREFIX = re.compile(r'-([0-9a-f]{8})\.pth$')
# How torch's weights-only unpickler names what it refused, in its two messages.
_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>")
_MAX_LISTED_KEYS = 8


def verify_sha256_prefix(path):
    """If the file name carries OpenMMLab's sha256 prefix, check it. Returns the full digest or None."""
    match = _SHA256_PREFIX.search(Path(path).name)
    if not match:
        return None
    digest = sha256_of(path)
    if not digest.startswith(match.group(1)):
        raise UserError(f'{path}: sha256 is {digest[:8]}..., but the file name says {match.group(1)}: '
                        'the download is corrupt or incomplete; delete it and download it again')
    return digest


# Globals a checkpoint may need for plain numpy data in its `meta` (a seed, a best score): array
# and scalar reconstruction, no code. Anything else is refused.
_NUMPY_DATA_GLOBALS = re.compile(r'^numpy(\._core|\.core)?\.(multiarray\.(scalar|_reconstruct)|ndarray|dtype'
                                 r'|dtypes\.\w+DType)$')
_MAX_ALLOWED_GLOBALS = 16


class TrainingLogData:
    """Stands in for an mmengine class that a training checkpoint pickles as plain data (the
    message hub's HistoryBuffer of logged losses): its attributes are loaded, no code runs.
    mmdet 3.x's Runner writes these into every epoch_N.pth; the published files drop them."""


# mmengine classes whose pickled state is plain data (numpy arrays, numbers): read as
# TrainingLogData, so a user's own epoch_N.pth loads without mmengine and without trusting it.
_MMENGINE_DATA_CLASSES = ('mmengine.logging.history_buffer.HistoryBuffer',)


def _resolve_global(name):
    import importlib
    module, _, attr = name.rpartition('.')
    return getattr(importlib.import_module(module), attr)


def _torch_load_weights_only(path):
    """torch.load(weights_only=True), allowing numpy data globals one by one as they come up,
    and mmengine's training-log classes as TrainingLogData."""
    stand_ins = [(TrainingLogData, name) for name in _MMENGINE_DATA_CLASSES]
    allowed = []
    while True:
        try:
            with torch.serialization.safe_globals(stand_ins + allowed):
                return torch.load(path, map_location='cpu', weights_only=True)
        except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
            text = str(exc)
            found = _UNSAFE_GLOBAL.search(text)
            unsafe = found and (found.group(1) or found.group(2))
            if unsafe and _NUMPY_DATA_GLOBALS.match(unsafe) and len(allowed) < _MAX_ALLOWED_GLOBALS:
                try:
                    allowed.append(_resolve_global(unsafe))
                    continue
                except (ImportError, AttributeError):
                    pass
            if unsafe or 'Weights only load failed' in text and 'Unsupported' in text:
                what = unsafe or 'an unsupported object'
                raise UserError(
                    f'{path}: refused: the file needs arbitrary code to unpickle ({what}), and '
                    'this kit loads checkpoints with torch.load(weights_only=True). Use an '
                    'official OpenMMLab checkpoint, or re-save yours as '
                    '{"state_dict": model.state_dict()}') from None
            raise UserError(f'{path}: not a PyTorch checkpoint ({type(exc).__name__}: '
                            f'{text.splitlines()[0] if text else "unreadable"})') from None


def read_checkpoint(path):
    """Return (state_dict, meta) from an mmdet 2.x/3.x checkpoint or a bare state dict."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f'checkpoint {path} not found: download '
                        'centernet_resnet18_140e_coco_20210705_093630-bb5b3bf7.pth (scripts/prepare.sh '
                        '--only checkpoint) or pass --weight PATH')
    verify_sha256_prefix(path)
    obj = _torch_load_weights_only(path)
    if not isinstance(obj, dict):
        raise UserError(f'{path}: not a checkpoint: it holds a {type(obj).__name__}, not a dict '
                        'of tensors')
    meta = obj.get('meta') if isinstance(obj.get('meta'), dict) else {}
    state_dict = obj['state_dict'] if 'state_dict' in obj else obj
    if not isinstance(state_dict, dict) or not state_dict or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise UserError(f'{path}: not a checkpoint: expected {{"state_dict": {{name: tensor}}}} or '
                        'a bare {name: tensor} dict')
    # DataParallel / DistributedDataParallel wrap every key in `module.`.
    state_dict = {k[len('module.'):] if k.startswith('module.') else k: v
                  for k, v in state_dict.items()}
    return state_dict, meta


def _listed(keys):
    keys = sorted(keys)
    shown = ', '.join(keys[:_MAX_LISTED_KEYS])
    return shown + (f' (+{len(keys) - _MAX_LISTED_KEYS} more)' if len(keys) > _MAX_LISTED_KEYS else '')


# A BatchNorm's training-step counter: not read in eval mode, filled in by torch when absent.
_OPTIONAL_SUFFIX = '.num_batches_tracked'


def _shape_fits(given, expected):
    """torch.nn.Module._load_from_state_dict's rule: equal shapes, or a (1,) tensor for a 0-dim
    one ("backward compatibility: loading 1-dim tensor from 0.3.* to version 0.4+")."""
    return given.shape == expected.shape or (expected.dim() == 0 and tuple(given.shape) == (1,))


def load_state_dict_strict(model, state_dict, source='checkpoint'):
    """model.load_state_dict(strict=True) with one readable message for every kind of mismatch."""
    expected = model.state_dict()
    missing = {k for k in expected.keys() - state_dict.keys() if not k.endswith(_OPTIONAL_SUFFIX)}
    unexpected = state_dict.keys() - expected.keys()
    wrong_shape = [f'{k} {tuple(state_dict[k].shape)} != {tuple(expected[k].shape)}'
                   for k in expected.keys() & state_dict.keys()
                   if not _shape_fits(state_dict[k], expected[k])]
    problems = []
    if missing:
        problems.append(f'missing keys: {_listed(missing)}')
    if unexpected:
        problems.append(f'unexpected keys: {_listed(unexpected)}')
    if wrong_shape:
        problems.append(f'wrong shapes: {_listed(wrong_shape)}')
    if problems:
        raise UserError(f'{source} does not fit the model the config describes; '
                        + '; '.join(problems)
                        + '. Check that --weight and --cfg belong together (CenterNet-R18, no DCN)')
    # The model's own (zero) counters where the checkpoint has none; torch reshapes the rest.
    complete = {**{k: v for k, v in expected.items() if k.endswith(_OPTIONAL_SUFFIX)},
                **state_dict}
    model.load_state_dict(complete, strict=True)
    return model


def checkpoint_classes(meta):
    """Class names stored by mmdet 2.x (`meta['CLASSES']`) or 3.x (`meta['dataset_meta']`)."""
    classes = meta.get('CLASSES') or (meta.get('dataset_meta') or {}).get('classes')
    return tuple(classes) if classes else None


def load_model(spec, weight_path):
    """Build the native model from `spec`, load `weight_path` strictly (eval mode, CPU, FP32).

    Returns (model, class names: the checkpoint's own, else None)."""
    from .model import build_model
    state_dict, meta = read_checkpoint(weight_path)
    classes = checkpoint_classes(meta)
    if classes is not None and len(classes) != spec.num_classes:
        raise UserError(f'{weight_path}: the checkpoint has {len(classes)} classes, the config '
                        f'{spec.num_classes}: use the config the checkpoint was trained with')
    model = build_model(spec)
    load_state_dict_strict(model, state_dict, source=str(weight_path))
    return model.eval(), classes
