"""Checkpoint loading: every accepted form loads strictly; every bad file gets its own message."""

import hashlib
import pickle

import pytest
import torch

from centernet.checkpoint import load_model, read_checkpoint
from centernet.errors import UserError


def _save(path, obj):
    torch.save(obj, path)
    return path


def _assert_weights_equal(model, weights):
    state = model.state_dict()
    assert state.keys() == weights.keys()
    assert all(torch.equal(state[k], weights[k]) for k in weights)


@pytest.mark.parametrize('form', ['mmdet3', 'mmdet2', 'bare', 'module-prefix'])
def test_accepted_checkpoint_forms_load_strictly(tmp_path, spec, seeded_weights, form):
    weights = dict(seeded_weights)
    if form == 'mmdet3':
        obj = {'meta': {'dataset_meta': {'classes': tuple(f'c{i}' for i in range(80))}},
               'state_dict': weights}
    elif form == 'mmdet2':
        obj = {'meta': {'mmdet_version': '2.14.0', 'CLASSES': tuple(f'c{i}' for i in range(80)),
                        'epoch': 140, 'iter': 100, 'config': 'model = dict(...)'},
               'state_dict': weights}
    elif form == 'bare':
        obj = weights
    else:
        obj = {'state_dict': {'module.' + k: v for k, v in weights.items()}}
    model, classes = load_model(spec, _save(tmp_path / 'w.pth', obj))
    _assert_weights_equal(model, weights)
    if form in ('mmdet3', 'mmdet2'):
        assert classes[0] == 'c0' and len(classes) == 80


def test_wrong_key_names_the_keys(tmp_path, spec, seeded_weights):
    weights = dict(seeded_weights)
    weights['neck.deconv_layers.0.conv.bias'] = torch.zeros(256)  # mmdet has no neck biases
    del weights['bbox_head.wh_head.2.bias']
    with pytest.raises(UserError) as error:
        load_model(spec, _save(tmp_path / 'w.pth', {'state_dict': weights}))
    message = str(error.value)
    assert 'missing keys: bbox_head.wh_head.2.bias' in message
    assert 'unexpected keys: neck.deconv_layers.0.conv.bias' in message


def test_wrong_shape_is_named(tmp_path, spec, seeded_weights):
    weights = dict(seeded_weights)
    weights['bbox_head.heatmap_head.2.weight'] = torch.zeros(20, 64, 1, 1)
    with pytest.raises(UserError, match=r'wrong shapes: bbox_head.heatmap_head.2.weight '
                                        r'\(20, 64, 1, 1\) != \(80, 64, 1, 1\)'):
        load_model(spec, _save(tmp_path / 'w.pth', weights))


def test_missing_file(tmp_path, spec):
    with pytest.raises(UserError, match='not found: download centernet_resnet18'):
        load_model(spec, tmp_path / 'nope.pth')


def test_non_checkpoint_file(tmp_path):
    path = tmp_path / 'notes.pth'
    path.write_text('this is not a checkpoint\n')
    with pytest.raises(UserError, match='not a PyTorch checkpoint'):
        read_checkpoint(path)


def test_checkpoint_of_wrong_content(tmp_path):
    with pytest.raises(UserError, match='not a checkpoint: it holds a list'):
        read_checkpoint(_save(tmp_path / 'list.pth', [1, 2, 3]))
    with pytest.raises(UserError, match=r'not a checkpoint: expected'):
        read_checkpoint(_save(tmp_path / 'dict.pth', {'state_dict': {'a': 'text'}}))


class _Exploit:
    """A pickle that would run a command when unpickled without weights_only."""

    def __reduce__(self):
        import os
        return (os.system, ('echo pwned',))


@pytest.mark.filterwarnings('ignore:Detected pickle protocol')
def test_pickle_needing_code_is_refused(tmp_path, seeded_weights):
    path = _save(tmp_path / 'evil.pth', {'state_dict': dict(seeded_weights), 'meta': _Exploit()})
    with pytest.raises(UserError, match=r'refused: the file needs arbitrary code to unpickle '
                                        r'\((posix|os|nt)\.system\)'):
        read_checkpoint(path)
    # A plain pickle (not torch's zip format, protocol 4) is refused too, before any code runs.
    raw = tmp_path / 'raw.pth'
    with open(raw, 'wb') as f:
        pickle.dump({'meta': _Exploit()}, f, protocol=4)
    with pytest.raises(UserError, match='refused: the file needs arbitrary code to unpickle'):
        read_checkpoint(raw)


def test_sha256_prefix_checked(tmp_path, seeded_weights):
    path = _save(tmp_path / 'tmp.pth', {'state_dict': dict(seeded_weights)})
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    good = path.rename(tmp_path / f'centernet_resnet18-{digest[:8]}.pth')
    read_checkpoint(good)  # the right prefix passes
    wrong = '0' * 8 if digest[:8] != '0' * 8 else '1' * 8
    bad = good.rename(tmp_path / f'centernet_resnet18-{wrong}.pth')
    with pytest.raises(UserError, match=f'sha256 is {digest[:8]}..., but the file name says '
                                        f'{wrong}: the download is corrupt'):
        read_checkpoint(bad)


def test_class_count_mismatch(tmp_path, spec, seeded_weights):
    obj = {'meta': {'CLASSES': ('a', 'b')}, 'state_dict': dict(seeded_weights)}
    with pytest.raises(UserError, match='the checkpoint has 2 classes, the config 80'):
        load_model(spec, _save(tmp_path / 'w.pth', obj))


@pytest.mark.parametrize('legacy_format', [False, True])
def test_numpy_data_in_meta_is_accepted(tmp_path, spec, seeded_weights, legacy_format):
    """mmcv-era checkpoints may keep numpy scalars/arrays in `meta` (seed, scores): plain data,
    allowed one global at a time; the pre-1.6 (non-zip) format that mmdet 2.x's publish step
    wrote loads too."""
    import numpy as np
    obj = {'meta': {'seed': np.int64(42), 'best_score': np.float64(0.259), 'hist': np.zeros(3),
                    'CLASSES': tuple(f'c{i}' for i in range(80))},
           'state_dict': dict(seeded_weights)}
    path = tmp_path / 'np.pth'
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy_format)
    model, classes = load_model(spec, path)
    _assert_weights_equal(model, seeded_weights)
    assert len(classes) == 80
    _, meta = read_checkpoint(path)
    assert meta['seed'] == 42 and meta['hist'].shape == (3,)


# --- what torch's own load_state_dict accepts (and so mmdet) ------------------------------------

def _old_pytorch(weights, shape):
    """num_batches_tracked as 1-element tensors (PyTorch 0.4.0) or any other shape."""
    return {k: v.reshape(shape) if k.endswith('num_batches_tracked') else v
            for k, v in weights.items()}


STATE_VARIANTS = {
    'num_batches_tracked-1-element': lambda w: _old_pytorch(w, (1,)),
    'num_batches_tracked-missing': lambda w: {k: v for k, v in w.items()
                                              if not k.endswith('num_batches_tracked')},
    'num_batches_tracked-1x1': lambda w: _old_pytorch(w, (1, 1)),
    'running_var-1-element-too-few': lambda w: {**w, 'backbone.bn1.running_var':
                                                w['backbone.bn1.running_var'][:1]},
}


def _torch_loads(spec, state):
    """The independent truth: a fresh model's own load_state_dict(strict=True), as mmdet's
    mmengine calls it (a plain dict: no `_metadata`, as in an mmdet checkpoint's state)."""
    from centernet.model import build_model
    model = build_model(spec)
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError:
        return None
    return model


@pytest.mark.parametrize('variant', list(STATE_VARIANTS))
@pytest.mark.parametrize('prefix', ['', 'module.'])
def test_accepts_exactly_what_torch_accepts(tmp_path, spec, seeded_weights, variant, prefix):
    state = STATE_VARIANTS[variant](dict(seeded_weights))
    truth = _torch_loads(spec, state)
    path = _save(tmp_path / 'w.pth', {'state_dict': {prefix + k: v for k, v in state.items()}})
    if truth is None:
        with pytest.raises(UserError, match='does not fit the model the config describes'):
            load_model(spec, path)
        return
    model, _ = load_model(spec, path)
    expected = truth.state_dict()
    assert model.state_dict().keys() == expected.keys()
    assert all(torch.equal(model.state_dict()[k], expected[k]) for k in expected)
    _assert_weights_equal(model, seeded_weights)  # and they are the weights that were saved


def test_variants_cover_both_verdicts(spec, seeded_weights):
    """The table above holds cases torch accepts and cases it refuses (the test can fail)."""
    verdicts = {name: _torch_loads(spec, make(dict(seeded_weights))) is not None
                for name, make in STATE_VARIANTS.items()}
    assert verdicts == {'num_batches_tracked-1-element': True, 'num_batches_tracked-missing': True,
                        'num_batches_tracked-1x1': False, 'running_var-1-element-too-few': False}


def test_mmengine_training_checkpoint_loads_without_mmengine(tmp_path, spec, seeded_weights,
                                                             monkeypatch):
    """mmdet 3.x's Runner saves epoch_N.pth with optimizer, schedulers and a message hub whose
    HistoryBuffer objects are mmengine classes; mmdet loads it, so must the kit, running no code
    of the file. The class is faked at save time (no mmengine here) with mmengine's attributes."""
    import sys
    import types
    import numpy as np

    class HistoryBuffer:  # mmengine/logging/history_buffer.py's state
        def __init__(self):
            self.max_length = 1000000
            self._log_history = np.array([2.5, 2.1, 1.9])
            self._count_history = np.array([1, 1, 1])

    module_name = 'mmengine.logging.history_buffer'
    HistoryBuffer.__module__, HistoryBuffer.__qualname__ = module_name, 'HistoryBuffer'
    fake = types.ModuleType(module_name)
    fake.HistoryBuffer = HistoryBuffer
    for name in ('mmengine', 'mmengine.logging'):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module_name, fake)
    checkpoint = {
        'meta': {'epoch': 140, 'iter': 100, 'seed': np.int64(0), 'cfg': 'model = dict(...)',
                 'dataset_meta': {'classes': tuple(f'c{i}' for i in range(80)),
                                  'palette': [(220, 20, 60)] * 80}},
        'state_dict': dict(seeded_weights),
        'message_hub': {'log_scalars': {'train/loss': HistoryBuffer()},
                        'runtime_info': {'epoch': 140, 'iter': 100}, 'resumed_keys': {}},
        'optimizer': {'state': {0: {'momentum_buffer': torch.zeros(3)}},
                      'param_groups': [{'lr': 0.01, 'momentum': 0.9, 'params': [0]}]},
        'param_schedulers': [{'last_step': 140, 'base_values': [0.01]}],
    }
    path = _save(tmp_path / 'epoch_140.pth', checkpoint)
    for name in ('mmengine', 'mmengine.logging', module_name):
        monkeypatch.delitem(sys.modules, name)
    model, classes = load_model(spec, path)
    _assert_weights_equal(model, seeded_weights)
    assert len(classes) == 80
