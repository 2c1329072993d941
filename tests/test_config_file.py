"""The config is read as data, never run: centernet/config_file.py against mmengine's own
Config.fromfile (the truth for what a config means; it runs the file, so it only gets files
written here), on the kit's config and on a chain laid out as mmdet 3.3.0's CenterNet configs
are (a dataset, a schedule and a runtime base, the DCN config on them, the no-DCN one on that).
What is not data is refused in one line naming the construct and its line, and does not run.
"""

import textwrap

import pytest

import export
from common import run_main
from conftest import CONFIG
from centernet.config import load_spec
from centernet.config_file import read_config
from centernet.errors import UserError

mmengine_config = pytest.importorskip('mmengine.config')  # requirements-test.txt


def mmengine_reads(path):
    return mmengine_config.Config.fromfile(str(path)).to_dict()


def write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def mmdet_layout(tmp_path):
    """configs/_base_/{datasets,schedules}/..., default_runtime.py, centernet/{tta, dcn, r18}."""
    configs = tmp_path / 'configs'
    write(configs, '_base_/datasets/coco_detection.py', """\
        dataset_type = 'CocoDataset'
        data_root = 'data/coco/'
        backend_args = None
        test_pipeline = [dict(type='LoadImageFromFile', backend_args=backend_args),
                         dict(type='Resize', scale=(1333, 800), keep_ratio=True)]
        train_dataloader = dict(batch_size=2, dataset=dict(type=dataset_type, pipeline=[]))
        val_dataloader = dict(
            batch_size=1, num_workers=2,
            dataset=dict(type=dataset_type, data_root=data_root, test_mode=True,
                         ann_file='annotations/instances_val2017.json',
                         data_prefix=dict(img='val2017/'), pipeline=test_pipeline))
        test_dataloader = val_dataloader
        val_evaluator = dict(type='CocoMetric', metric='bbox',
                             ann_file=data_root + 'annotations/instances_val2017.json')
        test_evaluator = val_evaluator
        """)
    write(configs, '_base_/schedules/schedule_1x.py', """\
        train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
        param_scheduler = [dict(type='LinearLR', start_factor=0.001, by_epoch=False, end=500),
                           dict(type='MultiStepLR', end=12, milestones=[8, 11], gamma=0.1)]
        optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.02))
        """)
    write(configs, '_base_/default_runtime.py', """\
        default_scope = 'mmdet'
        vis_backends = [dict(type='LocalVisBackend')]
        visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
        work_dir = './work_dirs/{{ fileBasenameNoExtension }}'
        """)
    write(configs, 'centernet/centernet_tta.py', """\
        # TTA settings, unused at test time
        tta_model = dict(type='DetTTAModel', tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5)))
        """)
    model = CONFIG.read_text().split('model = ')[1].split('\n\n')[0]
    model = model.replace('use_dcn=False', 'use_dcn=True')
    pipeline = CONFIG.read_text().split('test_pipeline = ')[1].split('\n\n')[0]
    pipeline = pipeline.replace('backend_args=backend_args', 'backend_args={{_base_.backend_args}}')
    write(configs, 'centernet/centernet_r18-dcnv2.py', f"""\
_base_ = [
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py',
    './centernet_tta.py'
]
dataset_type = 'CocoDataset'
data_root = 'data/coco/'
model = {model}
test_pipeline = {pipeline}
train_dataloader = dict(
    batch_size=16,
    dataset=dict(_delete_=True, type='RepeatDataset', times=5,
                 dataset=dict(type=dataset_type, data_root=data_root,
                              backend_args={{{{_base_.backend_args}}}})))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
max_epochs = 28
param_scheduler = [dict(type='MultiStepLR', end=max_epochs, milestones=[18, 24], gamma=0.1)]
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=8 * 16)
""")
    return write(configs, 'centernet/centernet_r18.py', """\
        _base_ = './centernet_r18-dcnv2.py'

        model = dict(neck=dict(use_dcn=False))
        """)


def test_the_kits_config_reads_as_mmengine_reads_it():
    assert read_config(CONFIG) == mmengine_reads(CONFIG)


def test_an_mmdet_layout_reads_as_mmengine_reads_it(mmdet_layout):
    ours = read_config(mmdet_layout)
    assert ours == mmengine_reads(mmdet_layout)
    # what the merge rules did, spelled out
    assert ours['train_dataloader']['dataset']['type'] == 'RepeatDataset'  # _delete_
    assert 'pipeline' not in ours['train_dataloader']['dataset']
    assert ours['val_dataloader']['batch_size'] == 1                       # merged, key by key
    assert ours['test_dataloader']['dataset']['pipeline'][0]['backend_args'] is None
    assert ours['work_dir'] == './work_dirs/default_runtime'
    assert load_spec(mmdet_layout) == load_spec(CONFIG)


def test_a_config_never_imports_mmengine(mmdet_layout):
    import subprocess
    import sys
    from conftest import ROOT
    code = ('import sys; sys.path.insert(0, sys.argv[1]); from centernet.config import '
            'load_spec; load_spec(sys.argv[2]); print("mmengine" in sys.modules)')
    done = subprocess.run([sys.executable, '-c', code, str(ROOT), str(mmdet_layout)],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == 'False', done.stderr


@pytest.mark.parametrize('tail, line, construct', [
    ('import os\n', 3, 'an import statement'),
    ('from os import path\n', 3, 'an import statement'),
    ('_x = __import__("os").system("touch {marker}")\n', 3,
     "a call of __import__('os').system()"),
    ('_x = open("{marker}", "w")\n', 3, 'a call of open()'),
    ('y = [i for i in range(3)]\n', 3, 'a list comprehension'),
    ('def f():\n    pass\n', 3, 'a function definition'),
    ('if True:\n    y = 1\n', 3, 'an if statement'),
    ('model.update(dict(x=1))\n', 3, "the statement model.update(dict(x=1))"),
    ("model['neck'] = 1\n", 3, "the assignment to model['neck']"),
    ('y = (lambda: 1)\n', 3, 'a lambda'),
    ('y = 1 if model else 2\n', 3, 'a conditional expression'),
    ('y = undefined_name\n', 3, "the name 'undefined_name', not set earlier in the file,"),
    ('y = model.nothing\n', 3, '.nothing, a key its dict does not have,'),
    ('y = 10 ** 10 ** 10\n', 3, 'a power this large'),
    ('y = [0] * 10 ** 9\n', 3, 'a sequence this long'),
    ("y = f'{model!r}'\n", 3, 'an f-string field with a format or conversion'),
    ('with open("x") as f:\n    pass\n', 3, "a with block (mmengine's lazy-import format)"),
])
def test_what_is_not_data_is_refused_and_not_run(tmp_path, tail, line, construct):
    marker = tmp_path / 'ran'
    path = write(tmp_path, 'evil.py', "model = dict(type='CenterNet')\ny0 = 1\n"
                 + tail.replace('{marker}', str(marker)))
    with pytest.raises(UserError) as error:
        read_config(path)
    assert str(error.value) == (
        f'{path}:{line}: {construct} is not read: the kit reads a config as data, without '
        'running it (literals, dict(...), lists, tuples, names set earlier in the file, _base_ '
        'files); write the value out')
    assert not marker.exists()


def test_an_evil_config_stops_export_before_it_runs(capsys, tmp_path, checkpoint_path):
    """The issue's config: the kit's own, ending in a command. export.py refused to go on, in
    one line, and the command did not run (with mmengine it ran, and the export went on)."""
    marker = tmp_path / 'ran'
    evil = write(tmp_path, 'evil.py', CONFIG.read_text()
                 + f'_x = __import__("os").system("touch {marker}")\n')
    lines = len(CONFIG.read_text().splitlines()) + 1
    with pytest.raises(SystemExit) as code:
        run_main(export.main, ['--weight', str(checkpoint_path), '--cfg', str(evil),
                               '--output', str(tmp_path / 'm.onnx')])
    err = capsys.readouterr().err.strip()
    assert code.value.code == 2 and '\n' not in err
    assert err.startswith(f"error: {evil}:{lines}: a call of __import__('os').system() "
                          "is not read")
    assert not marker.exists() and not (tmp_path / 'm.onnx').exists()


@pytest.mark.parametrize('files, message', [
    ({'a.py': "_base_ = './b.py'\n", 'b.py': "_base_ = './a.py'\n"}, 'is its own _base_'),
    ({'a.py': "_base_ = ['./b.py', './c.py']\n", 'b.py': 'x = 1\n', 'c.py': 'x = 2\n'},
     'its _base_ files both set x (mmengine refuses that too)'),
    ({'a.py': "_base_ = './missing.py'\n"}, 'missing.py not found (a _base_ of'),
    ({'a.py': "_base_ = 'mmdet::centernet/x.py'\n"}, "is in an installed package"),
    ({'a.py': "_base_ = './b.py'\ny = dict(z={{_base_.nothing}})\n", 'b.py': 'x = 1\n'},
     '{{_base_.nothing}} names nothing its _base_ files set'),
    ({'a.py': "_base_ = './b.py'\nx = dict(k=1)\n", 'b.py': 'x = 1\n'},
     'x is a dict here but not in its _base_: set _delete_=True in it'),
    ({'a.py': 'x = (\n'}, ':1: not valid Python'),
    ({'a.py': "x = '{{$KIT_TEST_UNSET_VARIABLE:}}'\n"}, 'the environment variable '
     'KIT_TEST_UNSET_VARIABLE is not set'),
    ({'a.json': '[1, 2]'}, 'a JSON config must be an object'),
    ({'a.yaml': 'x: 1'}, 'a config must be a .py or .json file'),
])
def test_broken_configs_are_one_line(tmp_path, files, message):
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(UserError) as error:
        read_config(tmp_path / next(iter(files)))
    assert message in str(error.value) and '\n' not in str(error.value)


def test_json_and_environment_values_read_as_mmengine_reads_them(tmp_path, monkeypatch):
    monkeypatch.setenv('KIT_TEST_CLASSES', '80')
    write(tmp_path, 'base.json', '{"x": {"a": 1, "b": [1, 2]}, "name": "base"}')
    path = write(tmp_path, 'child.py', """\
        _base_ = 'base.json'
        x = dict(a=2, c='c')
        label = {{_base_.name}}
        classes = {{'$KIT_TEST_CLASSES:1'}}
        root = '{{$KIT_TEST_UNSET_VARIABLE:/data}}/coco'
        """)
    assert read_config(path) == mmengine_reads(path) == {
        'x': {'a': 2, 'b': [1, 2], 'c': 'c'}, 'name': 'base', 'label': 'base', 'classes': 80,
        'root': '/data/coco'}


@pytest.mark.parametrize('tail, line, construct', [
    ('y = 1 / 0\n', 3, 'the arithmetic 1 / 0, which fails (ZeroDivisionError),'),
    ('y = 2.0 ** 10000\n', 3, 'the arithmetic 2.0 ** 10000, which fails (OverflowError),'),
    ('a = 10 ** 1000\nb = a * a * a\n', 4, 'a number this large'),
    # the index is named by its source, not its 1001-digit value
    ('a = 10 ** 1000\nb = [1][a * 10]\n', 4, 'the index a * 10, which its value does not have,'),
    # tree size, not length: a million references to a million-character string
    ("y = [['a' * 1000000] * 1000000] * 100\n", 3, 'a sequence this long'),
    ('a = [0] * 500000\nb = [a, a, a, a, a]\n', 4, 'a value of more than 2,000,000 elements'),
    ('a = [0] * 900000\nb = [0] * 900000\nc = [0] * 900000\n', 5,
     'a config of more than 2,000,000 elements in all'),
    ('y = ' + ' + '.join(['1'] * 600) + '\n', 3, 'an expression nested this deeply'),
])
def test_hostile_arithmetic_and_sizes_are_one_short_line(tmp_path, tail, line, construct):
    """Each of these ended in a traceback (ZeroDivisionError, OverflowError, ValueError from the
    huge number's repr) or took 26 s and 784 MB (shared references walked one by one)."""
    path = write(tmp_path, 'hostile.py', "model = dict(type='CenterNet')\ny0 = 1\n" + tail)
    with pytest.raises(UserError) as error:
        read_config(path)
    assert str(error.value).startswith(f'{path}:{line}: {construct} is not read: ')
    assert len(str(error.value)) < 400


@pytest.mark.parametrize('recursion_limit', [1000, 20000])
def test_nesting_is_refused_whatever_the_recursion_limit(tmp_path, recursion_limit):
    """The nesting refusal waited for Python's RecursionError, so it moved with the recursion
    limit: in a process where torch.compile had raised it, a 600-deep sum was read. 200 levels
    are read and 201 refused, at any limit."""
    import sys
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(recursion_limit)
    try:
        deepest = write(tmp_path, 'deepest.py', 'y = ' + '-' * 199 + '1\n')
        assert read_config(deepest)['y'] == -1
        deeper = write(tmp_path, 'deeper.py', 'y = ' + '-' * 200 + '1\n')
        with pytest.raises(UserError, match='deeper.py:1: an expression nested this deeply'):
            read_config(deeper)
    finally:
        sys.setrecursionlimit(previous)


def test_copies_of_a_large_base_value_are_counted(tmp_path):
    write(tmp_path, 'b.py', 'x = [0] * 700000\n')
    path = write(tmp_path, 'a.py', "_base_ = './b.py'\ny = [{{_base_.x}}, {{_base_.x}}, "
                                   "{{_base_.x}}]\n")
    with pytest.raises(UserError) as error:
        read_config(path)
    assert str(error.value) == (f'{path.absolute()}: more than 2,000,000 elements in all with its '
                                '{{_base_.x}} values: the kit refuses a config this large')


@pytest.mark.parametrize('override, message', [
    ('model = dict(test_cfg=dict(topk=0))', 'model.test_cfg.topk=0 must be a whole number >= 1'),
    ('model = dict(test_cfg=dict(topk=-5))', 'model.test_cfg.topk=-5 must be a whole number >= 1'),
    # 80 classes x (32 / 4) ** 2 positions on the 32 x 32 canvas of a 1 x 1 picture
    ('model = dict(test_cfg=dict(topk=5121))', 'model.test_cfg.topk=5121 is more than the 5120 '
     'heatmap positions of the smallest canvas'),
    ('model = dict(test_cfg=dict(local_maximum_kernel=2))',
     'model.test_cfg.local_maximum_kernel=2 must be odd'),
    ('model = dict(test_cfg=dict(local_maximum_kernel=0))',
     'model.test_cfg.local_maximum_kernel=0 must be a whole number >= 1'),
    ('model = dict(data_preprocessor=dict(mean=[1.0, 2.0]))',
     'model.data_preprocessor.mean=[1.0, 2.0] must be 3 finite numbers, one per colour channel'),
    ('model = dict(data_preprocessor=dict(std=[1, 0, 1]))',
     'model.data_preprocessor.std=[1, 0, 1] must be 3 finite non-zero numbers'),
    ('model = dict(bbox_head=dict(num_classes=1e999))',
     'model.bbox_head.num_classes=inf must be a whole number >= 1'),
    ('model = dict(bbox_head=dict(num_classes=0))',
     'model.bbox_head.num_classes=0 must be a whole number >= 1'),
    ('model = dict(bbox_head=dict(in_channels=32))',
     "model.bbox_head.in_channels=32 must be the neck's last num_deconv_filters, 64"),
    ("test_dataloader = dict(dataset=dict(pipeline=[dict(type='RandomCenterCropPad', "
     "test_mode=True, test_pad_mode=['logical_or', -1])]))",
     'RandomCenterCropPad test_pad_mode N=-1 must be a whole number >= 0'),
    ("test_dataloader = dict(dataset=dict(pipeline=[dict(type='RandomCenterCropPad', "
     "test_mode=True, test_pad_mode=['logical_or', 30])]))",
     "RandomCenterCropPad test_pad_mode ['logical_or', 30] is not supported: N must be 2^k - 1"),
    ("test_dataloader = dict(dataset=dict(pipeline=[dict(type='RandomCenterCropPad', "
     "test_mode=True, test_pad_mode=['logical_or', 31], test_pad_add_pix=-1)]))",
     'RandomCenterCropPad test_pad_add_pix=-1 must be a whole number >= 0'),
])
def test_values_the_model_cannot_run_are_refused_in_one_line(tmp_path, override, message):
    """Each of these ended in an IndexError or RuntimeError in the model or decode, or (an even
    max-pool kernel) was exported though mmdet's max-pool changes the heatmap's size with it."""
    path = write(tmp_path, 'variant.py', f"_base_ = '{CONFIG}'\n{override}\n")
    with pytest.raises(UserError) as error:
        load_spec(path)
    assert str(error.value).startswith(f'{path}: {message}')
    assert '\n' not in str(error.value)
