"""The bad-input catalogue: each entry is one clear line on stderr, exit code 2, no partial file.

Every test here runs a real command-line entry point (export.py / inference.py) the way a user
would, and checks the exact message. Add a new entry as one more test in the same shape.

Failures of the machine (a full disk, a read-only folder, an I/O error, SIGTERM) get the same
treatment, and so do the inputs mmdet accepts that the kit must accept too (they must exit 0).
docs/troubleshooting.md lists every message with what to do.

Catalogue entries tested elsewhere (they need the fake TensorRT module's fixtures):
  engine built by another TensorRT version  test_tensorrt_contract.py::test_backend_refuses_engine_from_another_tensorrt
  engine built for another GPU              test_tensorrt_contract.py::test_backend_refuses_engine_for_another_gpu_architecture
  batch beyond the engine's profile         test_tensorrt_contract.py::test_backend_refuses_shapes_outside_the_profile
  no TensorRT / no GPU                      test_tensorrt_contract.py::test_no_tensorrt_is_a_user_error_naming_alternatives
  download offline / corrupt / cut off      test_prepare.py
  disk full while unpacking COCO            test_prepare.py::test_unpack_is_all_or_nothing
  other checkpoint forms mmdet loads        test_checkpoint.py (mmdet 2.x/3.x, bare, module.,
                                            numpy meta, torch's own load_state_dict as truth)
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import onnx
import pytest
import torch

import export
import inference
from common import run_main
from conftest import CONFIG, ROOT
from centernet.fileio import atomic_path, write_json
from centernet.synthetic import write_coco_dataset

# What run_main prints, and all it prints, when SIGTERM stops a command
SIGTERM_STOPPED = ('error: stopped by SIGTERM: no partial output was written; run the command '
                   'again to start over')


def with_default_sigint():
    """Popen's preexec_fn for a child a test sends Ctrl-C: a terminal's default SIGINT, even
    where the suite itself was started ignoring it (`cmd &` in a script), as children inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def fails_with(capsys, main, argv, *expected):
    """Run a CLI; assert exit 2 and a single 'error: ...' line containing every expected part."""
    with pytest.raises(SystemExit) as code:
        run_main(main, argv)
    err = capsys.readouterr().err.strip()
    assert code.value.code == 2, err
    assert err.startswith('error: ') and '\n' not in err and 'Traceback' not in err, err
    for part in expected:
        assert part in err, err
    return err


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('bad')
    write_coco_dataset(root / 'coco', ((64, 48), (48, 64), (96, 64)), seed=9)
    return root / 'coco'


def copy_dataset(dataset, tmp_path):
    return shutil.copytree(dataset, tmp_path / 'coco')


# --- weights and config (export.py) -------------------------------------------------------------

def test_missing_weight_file(capsys, tmp_path):
    out = tmp_path / 'm.onnx'
    fails_with(capsys, export.main, ['--weight', str(tmp_path / 'nope.pth'), '--output', str(out)],
               'nope.pth not found', 'download centernet_resnet18_140e_coco')
    assert not out.exists()


def test_corrupt_weight_file(capsys, tmp_path, checkpoint_path):
    broken = tmp_path / 'broken.pth'
    broken.write_bytes(checkpoint_path.read_bytes()[:5000])
    fails_with(capsys, export.main, ['--weight', str(broken), '--output', str(tmp_path / 'm.onnx')],
               'broken.pth: not a PyTorch checkpoint')


def test_non_checkpoint_file(capsys, tmp_path):
    text = tmp_path / 'readme.pth'
    text.write_text('hello')
    fails_with(capsys, export.main, ['--weight', str(text), '--output', str(tmp_path / 'm.onnx')],
               'not a PyTorch checkpoint')


class _RunsCode:
    def __reduce__(self):
        return (print, ('this ran during unpickling',))


def test_pickle_that_is_not_weights_only(capsys, tmp_path):
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': _RunsCode()}, evil)
    err = fails_with(capsys, export.main, ['--weight', str(evil), '--output', str(tmp_path / 'm.onnx')],
                     'refused: the file needs arbitrary code to unpickle (print)')
    assert 'this ran' not in err


def test_wrong_keys(capsys, tmp_path, seeded_weights):
    weights = {k.replace('bbox_head.', 'head.'): v for k, v in seeded_weights.items()}
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': weights}, path)
    fails_with(capsys, export.main, ['--weight', str(path), '--output', str(tmp_path / 'm.onnx')],
               'does not fit the model the config describes', 'missing keys: bbox_head.',
               'unexpected keys: head.')


def _config_variant(tmp_path, old, new):
    text = CONFIG.read_text()
    assert old in text
    path = tmp_path / 'variant.py'
    path.write_text(text.replace(old, new))
    return path


def test_dcn_config(capsys, tmp_path, checkpoint_path):
    cfg = _config_variant(tmp_path, 'use_dcn=False', 'use_dcn=True')
    fails_with(capsys, export.main, ['--weight', str(checkpoint_path), '--cfg', str(cfg),
                                     '--output', str(tmp_path / 'm.onnx')],
               'use_dcn=True (deformable convolution) is not supported')


def test_non_centernet_config(capsys, tmp_path, checkpoint_path):
    cfg = _config_variant(tmp_path, "type='CenterNet'", "type='RetinaNet'")
    fails_with(capsys, export.main, ['--weight', str(checkpoint_path), '--cfg', str(cfg),
                                     '--output', str(tmp_path / 'm.onnx')],
               "describes a 'RetinaNet' model; only type='CenterNet' is supported")


def test_missing_config(capsys, tmp_path, checkpoint_path):
    fails_with(capsys, export.main, ['--weight', str(checkpoint_path), '--cfg',
                                     str(tmp_path / 'none.py'), '--output', str(tmp_path / 'm.onnx')],
               'none.py not found')


# --- dataset (inference.py) ---------------------------------------------------------------------

def _infer(onnx_paths, dataset, *extra):
    return ['--engine', str(onnx_paths['fp32']), '--datasets', str(dataset), '--workers', '0',
            '--quiet', *extra]


def test_missing_annotation_file(capsys, tmp_path, onnx_paths, dataset):
    root = copy_dataset(dataset, tmp_path)
    (root / 'annotations' / 'instances_val2017.json').unlink()
    fails_with(capsys, inference.main, _infer(onnx_paths, root),
               'instances_val2017.json not found', 'expected the layout DATASETS_DIR/'
               '{annotations/instances_val2017.json, images/val2017/*.jpg}')


def test_malformed_annotation_file(capsys, tmp_path, onnx_paths, dataset):
    root = copy_dataset(dataset, tmp_path)
    (root / 'annotations' / 'instances_val2017.json').write_text('{"images": [')
    fails_with(capsys, inference.main, _infer(onnx_paths, root),
               'is not a COCO annotation file', 'download annotations_trainval2017.zip again')


def test_annotation_file_missing_fields(capsys, tmp_path, onnx_paths, dataset):
    root = copy_dataset(dataset, tmp_path)
    ann = root / 'annotations' / 'instances_val2017.json'
    content = json.loads(ann.read_text())
    del content['annotations'][0]['image_id']
    ann.write_text(json.dumps(content))
    fails_with(capsys, inference.main, _infer(onnx_paths, root), 'is malformed (missing field')


def test_wrong_dataset_layout(capsys, tmp_path, onnx_paths, dataset):
    root = copy_dataset(dataset, tmp_path)
    shutil.move(root / 'images' / 'val2017', root / 'pictures')
    fails_with(capsys, inference.main, _infer(onnx_paths, root), 'no image folder under',
               'expected the layout')


def test_missing_images(capsys, tmp_path, onnx_paths, dataset):
    root = copy_dataset(dataset, tmp_path)
    next((root / 'images' / 'val2017').iterdir()).unlink()
    fails_with(capsys, inference.main, _infer(onnx_paths, root),
               '1 of 3 images listed in instances_val2017.json are missing')


def test_empty_dataset(capsys, tmp_path, onnx_paths, dataset):
    root = copy_dataset(dataset, tmp_path)
    ann = root / 'annotations' / 'instances_val2017.json'
    content = json.loads(ann.read_text())
    content['images'], content['annotations'] = [], []
    ann.write_text(json.dumps(content))
    fails_with(capsys, inference.main, _infer(onnx_paths, root), 'lists no images: nothing to evaluate')


def test_no_model_given(capsys, dataset):
    fails_with(capsys, inference.main, ['--datasets', str(dataset)],
               'no model given: pass --engine MODEL, where MODEL is an ONNX file from export.py')


def test_no_dataset_given(capsys, onnx_paths, monkeypatch):
    monkeypatch.delenv('DATASETS_DIR', raising=False)
    fails_with(capsys, inference.main, ['--engine', str(onnx_paths['fp32'])],
               'no dataset: pass --datasets DIR or set DATASETS_DIR')


@pytest.mark.parametrize('damage, reason', [
    (lambda data: data[:len(data) // 2], 'truncated JPEG'),
    (lambda data: b'\x00' * 64 + data[64:], 'not a readable image'),
    (lambda data: b'', 'empty file'),
])
def test_corrupt_and_truncated_images(capsys, tmp_path, onnx_paths, dataset, damage, reason):
    root = copy_dataset(dataset, tmp_path)
    victim = sorted((root / 'images' / 'val2017').iterdir())[1]
    victim.write_bytes(damage(victim.read_bytes()))
    out = tmp_path / 'det.json'
    fails_with(capsys, inference.main, _infer(onnx_paths, root, '--save_json', str(out)),
               victim.name, reason, '--skip_bad_images')
    assert not out.exists()
    # With --skip_bad_images the run goes on, counts it as without detections and lists it.
    with pytest.raises(SystemExit) as code:
        run_main(inference.main, _infer(onnx_paths, root, '--skip_bad_images', '--save_json',
                                        str(out), '--record', str(tmp_path / 'r.json')))
    assert code.value.code == 0
    assert f'{victim}: {reason}' in capsys.readouterr().out
    assert len(json.loads(out.read_text())) == 200


def _coco_with(dataset, tmp_path, name, data, width=None, height=None):
    """The 3-image set plus `name` (bytes `data`) listed in its annotation file."""
    root = copy_dataset(dataset, tmp_path)
    (root / 'images' / 'val2017' / name).write_bytes(data)
    ann = root / 'annotations' / 'instances_val2017.json'
    content = json.loads(ann.read_text())
    content['images'].append(dict(id=999, file_name=name, width=width, height=height))
    ann.write_text(json.dumps(content))
    return root, root / 'images' / 'val2017' / name


def test_size_bomb_in_a_coco_set(capsys, tmp_path, onnx_paths, dataset):
    """A 177-byte PNG declaring 30000 x 30000 (2.7 GB decoded, under OpenCV's own cap): one
    line naming it, its size, the estimate and the limit; --skip_bad_images skips and lists it."""
    from test_images import png_declaring
    root, bomb = _coco_with(dataset, tmp_path, 'bomb.png', png_declaring(30000, 30000),
                            30000, 30000)
    err = fails_with(capsys, inference.main, _infer(onnx_paths, root),
                     f'{bomb}: 30000x30000 pixels (900.0 MP) would need about ',
                     'of memory to decode and run at full size on onnxruntime',
                     'over the limit of 250 MP: shrink the picture, or raise --max_pixels',
                     '--skip_bad_images')
    # the estimate: 900 MP x (PNG decode + ONNX Runtime's network), as image_header computes it
    assert f'({6.2 + 108:.0f} bytes per pixel)' in err
    with pytest.raises(SystemExit) as code:
        run_main(inference.main, _infer(onnx_paths, root, '--skip_bad_images',
                                        '--record', str(tmp_path / 'r.json')))
    assert code.value.code == 0
    assert f'  {bomb}: 30000x30000 pixels' in capsys.readouterr().out


def test_max_pixels_and_the_memory_available(capsys, tmp_path, onnx_paths, dataset, monkeypatch):
    picture = sorted((dataset / 'images' / 'val2017').iterdir())[2]  # 96 x 64
    fails_with(capsys, inference.main, _infer(onnx_paths, dataset, '--max-pixels', '6000'),
               f'{picture}: 96x64 pixels would need about', 'over the limit of 0.006 MP')
    from centernet import image_header
    monkeypatch.setattr(image_header, 'available_memory', lambda: 10_000)
    fails_with(capsys, inference.main, _infer(onnx_paths, dataset),
               'would need about', 'more than the 10 kB available now: shrink the picture, or '
               'free memory')
    fails_with(capsys, inference.main, _infer(onnx_paths, dataset, '--max_pixels', '0'),
               '--max_pixels must be at least 1, got 0')


def test_the_memory_check_counts_the_whole_batch(capsys, tmp_path, onnx_paths, monkeypatch):
    """Two 64 x 48 images share a canvas size, so at --batchsize 2 they are decoded and run
    together: each fits the memory alone, the batch does not (the check was per picture, and
    four 3 MP photos at batch 4 passed 1.0 GB available and peaked 1.5 GB above it)."""
    write_coco_dataset(tmp_path / 'coco', ((64, 48), (64, 48)), seed=3)
    first = sorted((tmp_path / 'coco' / 'images' / 'val2017').iterdir())[0]
    one = first.stat().st_size + 64 * 48 * (6.2 + 108)  # file + JPEG decode + ONNX Runtime's
    from centernet import image_header
    monkeypatch.setattr(image_header, 'available_memory', lambda: int(1.5 * one))
    fails_with(capsys, inference.main, _infer(onnx_paths, tmp_path / 'coco', '--batchsize', '2'),
               f'{first}: 64x48 pixels would need about {2 * one / 1e3:.0f} kB of memory to '
               'decode and run at full size on onnxruntime, 2 pictures of this size at once (the '
               'images of its batch, which share its canvas size) (',
               f'bytes per pixel each), more than the {1.5 * one / 1e3:.0f} kB available now: '
               'shrink the picture, lower --batchsize, or free memory')
    with pytest.raises(SystemExit) as code:
        run_main(inference.main, _infer(onnx_paths, tmp_path / 'coco', '--batchsize', '1',
                                        '--record', str(tmp_path / 'r.json')))
    assert code.value.code == 0, capsys.readouterr().err


@pytest.mark.parametrize('width, height', [(None, None), ('missing', 'missing'), (0, -5),
                                           ('640', 480.5)])
def test_annotation_without_a_usable_size(capsys, tmp_path, onnx_paths, dataset, width, height):
    """mmdet's test pipeline takes the size from the pixels (ori_shape) and never reads the
    file's width/height: null, missing or nonsense values run, with the same detections."""
    root = copy_dataset(dataset, tmp_path)
    ann = root / 'annotations' / 'instances_val2017.json'
    content = json.loads(ann.read_text())
    for image in content['images']:
        for key, value in (('width', width), ('height', height)):
            if value == 'missing':
                del image[key]
            else:
                image[key] = value
    ann.write_text(json.dumps(content))
    assert _detections(capsys, onnx_paths, dataset, tmp_path / 'sized.json') == \
        _detections(capsys, onnx_paths, root, tmp_path / 'unsized.json')


def _detections(capsys, onnx_paths, folder, out):
    """An accuracy run's --save_json records, sorted (groups of one canvas size come in order of
    first appearance: unknown sizes group otherwise, with the same detections per image)."""
    with pytest.raises(SystemExit) as code:
        run_main(inference.main, _infer(onnx_paths, folder, '--save_json', str(out),
                                        '--record', str(out.with_suffix('.record.json'))))
    assert code.value.code == 0, capsys.readouterr().err
    return sorted(json.loads(out.read_text()), key=lambda r: (r['image_id'], -r['score']))


def test_a_motion_photo_in_a_coco_set_runs_as_its_jpeg(capsys, tmp_path, onnx_paths, dataset):
    """A JPEG with a video appended after its end marker (phones' motion photos): mmdet reads
    the JPEG, and so does the kit: the same detections as the JPEG alone."""
    from test_images import MOTION_VIDEO
    victim = sorted((dataset / 'images' / 'val2017').iterdir())[0]
    root = copy_dataset(dataset, tmp_path)
    moved = root / 'images' / 'val2017' / victim.name
    moved.write_bytes(victim.read_bytes() + MOTION_VIDEO)
    assert _detections(capsys, onnx_paths, dataset, tmp_path / 'jpeg.json') == \
        _detections(capsys, onnx_paths, root, tmp_path / 'motion.json')


def test_size_bombs_in_a_real_run_stay_small(tmp_path, onnx_paths, dataset):
    """inference.py as a user runs it, on a set holding a 60000 x 60000 and a 30000 x 30000 PNG
    (each 177 bytes) with --skip_bad_images: both listed, and the process peaks at what a run
    of three tiny images takes, not the 5.6 to 22 GB their decode would. Peak = the child's own
    VmHWM, read at its exit (getrusage of a vfork'ed child would count pytest's peak)."""
    from test_images import png_declaring
    root = copy_dataset(dataset, tmp_path)
    for side in (60000, 30000):
        root_images = root / 'images' / 'val2017'
        (root_images / f'bomb{side}.png').write_bytes(png_declaring(side, side))
    ann = root / 'annotations' / 'instances_val2017.json'
    content = json.loads(ann.read_text())
    content['images'] += [dict(id=900 + i, file_name=f'bomb{side}.png', width=side, height=side)
                          for i, side in enumerate((60000, 30000))]
    ann.write_text(json.dumps(content))
    sys.path.insert(0, str(ROOT / 'tools'))
    from benchmark_memory import peak_of
    done, peak = peak_of([str(ROOT / 'inference.py'), *_infer(
        onnx_paths, root, '--skip_bad_images', '--record', str(tmp_path / 'r.json'))], tmp_path)
    assert done.returncode == 0, done.stderr
    for side in (60000, 30000):
        assert f'bomb{side}.png: {side}x{side} pixels' in done.stdout
    assert peak < 2 ** 30, peak  # a run of 3 tiny images: about 0.5 GiB


# --- outputs ------------------------------------------------------------------------------------

def test_unwritable_output_folder(capsys, tmp_path, onnx_paths, dataset):
    blocker = tmp_path / 'a-file'
    blocker.write_text('')
    fails_with(capsys, inference.main,
               _infer(onnx_paths, dataset, '--save_json', str(blocker / 'det.json')),
               f'output folder {blocker} does not exist')


def test_ctrl_c_during_a_write_leaves_the_old_file(tmp_path):
    target = tmp_path / 'results.json'
    write_json(target, {'old': True})
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text('{"new": tr')
            raise KeyboardInterrupt
    assert json.loads(target.read_text()) == {'old': True}
    assert [p.name for p in tmp_path.iterdir()] == ['results.json']


def test_ctrl_c_is_one_error_line_and_exit_2(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt
    fails_with(capsys, interrupted, [], 'stopped by Ctrl-C (SIGINT): no partial output was '
               'written; run the command again to start over')


# --- a failing machine --------------------------------------------------------------------------

def _storage_fails(monkeypatch, code):
    """The disk refuses the data when it is flushed (os.fsync), as a full disk or a failing one
    does with delayed allocation, NFS or a USB stick."""
    def fsync(fd):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(os, 'fsync', fsync)


def _no_temporary_files(folder):
    return [p.name for p in Path(folder).rglob('*.tmp')] == []


@pytest.mark.parametrize('which', ['--save_json', '--record'])
def test_disk_full_on_an_inference_output(capsys, tmp_path, onnx_paths, dataset, monkeypatch,
                                          which):
    outputs = {'--save_json': tmp_path / 'det.json', '--record': tmp_path / 'run.json'}
    argv = _infer(onnx_paths, dataset, '--limit', '1', '--save_json', str(outputs['--save_json']),
                  '--record', str(outputs['--record']))
    if which == '--record':  # the detections are written first: let that one through
        real_fsync, calls = os.fsync, []

        def fsync(fd):
            calls.append(fd)
            if len(calls) > 2:  # detections: file + folder
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_fsync(fd)
        monkeypatch.setattr(os, 'fsync', fsync)
    else:
        _storage_fails(monkeypatch, errno.ENOSPC)
    fails_with(capsys, inference.main, argv, f'cannot write {outputs[which]}: no space left on '
               'the device: free some space there or write elsewhere (nothing was written there)')
    assert not outputs[which].exists() and _no_temporary_files(tmp_path)


def test_disk_full_on_the_onnx(capsys, tmp_path, checkpoint_path, monkeypatch):
    out = tmp_path / 'm.onnx'
    _storage_fails(monkeypatch, errno.ENOSPC)
    fails_with(capsys, export.main, ['--weight', str(checkpoint_path), '--output', str(out),
                                     '--static', '1x64x64', '--no-simplify', '--skip-check'],
               f'cannot write {out}: no space left on the device')
    assert list(tmp_path.iterdir()) == []


def test_io_error_on_a_picture(capsys, tmp_path, onnx_paths, dataset, monkeypatch):
    _storage_fails(monkeypatch, errno.EIO)
    out = tmp_path / 'pictures'
    picture = sorted((dataset / 'images' / 'val2017').iterdir())[0]
    fails_with(capsys, inference.main, ['--engine', str(onnx_paths['fp32']), '--images',
                                        str(picture), '--out', str(out), '--quiet'],
               f'cannot write {out / picture.name}: input/output error: the disk may be failing')
    assert list(out.iterdir()) == []


def test_read_only_output_folder(capsys, tmp_path, onnx_paths, dataset, monkeypatch):
    """A read-only file system (or, for a user who is not root, a folder without write access)."""
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and str(path).startswith(str(tmp_path)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)
    monkeypatch.setattr(os, 'open', read_only)
    out = tmp_path / 'det.json'
    fails_with(capsys, inference.main, _infer(onnx_paths, dataset, '--limit', '1',
                                              '--save_json', str(out)),
               f'cannot write {out}: the file system is read-only: choose a writable folder')
    assert list(tmp_path.iterdir()) == []


def test_file_size_limit_of_the_machine(tmp_path, onnx_paths, dataset):
    """A real refusal by the kernel, not a simulated one: RLIMIT_FSIZE makes write() fail with
    EFBIG once the file would pass 1 KiB (SIGXFSZ ignored, as a shell's `ulimit -f` leaves it)."""
    import resource

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    out = tmp_path / 'det.json'
    done = subprocess.run([sys.executable, str(ROOT / 'inference.py'), *_infer(
        onnx_paths, dataset, '--limit', '1', '--save_json', str(out), '--record',
        str(tmp_path / 'run.json'))], capture_output=True, text=True, preexec_fn=limit_file_size,
        timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (f'error: cannot write {out}: file too large for this file '
                                   'system or its limits: write elsewhere (nothing was written '
                                   'there)')
    assert list(tmp_path.iterdir()) == []


def test_a_signal_wrapped_by_the_code_it_hit_is_still_a_clean_stop(capsys):
    """SIGTERM during a lazy import once reached run_main as RuntimeError ("Error calling
    __set_name__"), because Python wraps what a descriptor's __set_name__ raises: it must still
    be one error line and exit 2; an unrelated RuntimeError must still propagate."""
    from common import Stopped, run_main

    class Descriptor:
        def __set_name__(self, owner, name):
            raise Stopped('SIGTERM')  # where the signal handler raised it

    def hit_during_class_creation(argv):
        type('Imported', (), {'field': Descriptor()})

    with pytest.raises(SystemExit) as done:
        run_main(hit_during_class_creation)
    assert done.value.code == 2
    assert capsys.readouterr().err.strip() == SIGTERM_STOPPED

    def plain_bug(argv):
        raise RuntimeError('a bug, not a signal')
    with pytest.raises(RuntimeError, match='a bug'):
        run_main(plain_bug)


def test_a_stop_reminder_during_the_normal_end_raises_nothing():
    """A swallowed SIGTERM, then main returns normally: a reminder that lands while run_main's
    __exit__ joins the reminder thread must not raise Stopped out of that `finally`. The handler
    is called as the reminder's signal would call it; the reminder thread itself waits long."""
    import common
    stopping = common._StickyStop()
    stopping.REMIND_SECONDS = 600
    stopping.__enter__()
    try:
        with pytest.raises(common.Stopped):
            stopping.handle(signal.SIGTERM, None)  # the first SIGTERM, which a library swallows
        stopping.done.set()                         # main returned: __exit__ has begun
        stopping.handle(signal.SIGTERM, None)       # a reminder landing now: nothing raised
    finally:
        stopping.__exit__(None, None, None)
    assert signal.getsignal(signal.SIGTERM) == stopping.previous


def test_an_error_names_a_file_as_stdout_does(tmp_path):
    """A name that is not UTF-8 (bad\\xff.jpg) showed as Python's surrogate bad\\udcff.jpg
    in the error line while stdout printed bad\\xff.jpg."""
    code = ('import os, sys; sys.path.insert(0, sys.argv[1]); from common import run_main; '
            'from centernet.errors import UserError\n'
            'def main(argv):\n'
            '    raise UserError(os.fsdecode(b"bad\\xff.jpg") + ": empty file")\n'
            'run_main(main)')
    done = subprocess.run([sys.executable, '-c', code, str(ROOT)], capture_output=True,
                          timeout=60, env=dict(os.environ, PYTHONIOENCODING='utf-8'))
    assert done.returncode == 2
    assert done.stderr == b'error: bad\\xff.jpg: empty file\n'


SWALLOWING_MAIN = '''
import sys, time
sys.path.insert(0, {root!r})
from common import run_main

def main(argv):
    try:                      # a library that catches the stop and carries on (numpy's lazy
        print('ready', flush=True)  # import of numpy.random did, in about one stop in five)
        for _ in range(6000):  # short sleeps: a SIGTERM landing just before one long sleep
            time.sleep(0.01)   # began would wait for its end (it hung the test for 60 s once)
    except BaseException:
        print('swallowed', flush=True)
    try:
        while True:           # the run goes on: only a second raise can end it
            time.sleep(0.01)
    finally:                  # its clean-up, longer than the reminders' interval, must finish
        time.sleep(1.2)
        print('cleaned up', flush=True)

run_main(main)
'''


@pytest.mark.parametrize('signum, how', [(signal.SIGTERM, 'SIGTERM'),
                                         (signal.SIGINT, 'Ctrl-C (SIGINT)')])
def test_a_stop_a_library_swallowed_still_stops_the_run(signum, how):
    """One SIGTERM or Ctrl-C, caught and dropped by the code it hit: run_main raises it again
    until it arrives (the stop is sticky), and a clean-up under way is not cut short by the
    reminders. (A Ctrl-C was not sticky: one a library swallowed was lost, and the run went on.)"""
    process = subprocess.Popen([sys.executable, '-c', SWALLOWING_MAIN.format(root=str(ROOT))],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=with_default_sigint)
    try:
        assert process.stdout.readline() == 'ready\n'
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert out == 'swallowed\ncleaned up\n'
    assert process.returncode == 2, err
    assert err.strip() == SIGTERM_STOPPED.replace('SIGTERM', how)


def run_main_is_stopped(main_body, path=()):
    """Run `def main(argv): <main_body>` under run_main in a fresh Python, `path` first on
    sys.path; assert that a SIGTERM stopped it with the one error line and nothing else."""
    script = ('import os, signal, sys, time\n'
              f'sys.path[:0] = {[str(ROOT), *map(str, path)]!r}\n'
              'from common import run_main\n'
              + textwrap.dedent(main_body) +
              'run_main(main)\n')
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and 'not stopped' not in done.stdout
    assert done.stderr.strip() == SIGTERM_STOPPED


def test_sigterm_inside_a_finaliser_prints_no_traceback():
    """SIGTERM landing in a __del__ or a weakref callback (importlib's module-lock callback, in
    a real export): Python cannot raise from there and prints 'Exception ignored in' with a
    traceback. run_main keeps that quiet, since the reminder raises the stop again where it can."""
    run_main_is_stopped('''
        class Finalised:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.5)  # the handler runs here, in the finaliser
        def main(argv):
            Finalised()
            time.sleep(30)
            print("not stopped")
        ''')


def test_sigterm_inside_an_import_that_swallows_it_still_stops(tmp_path):
    """SIGTERM landing while a module initialises, whose init clears the exception (as Cython's
    ABC registration does in numpy.random's lazy import: the performance run then went on with
    SIGTERM ignored): run_main delivers it again after the import, and the run stops."""
    (tmp_path / 'swallowing.py').write_text(
        'import os, signal, time\n'
        'try:\n'
        '    os.kill(os.getpid(), signal.SIGTERM)\n'
        '    time.sleep(0.5)  # the handler runs here, inside the import\n'
        'except BaseException:\n'
        '    pass  # what the extension module did\n')
    run_main_is_stopped('''
        def main(argv):
            import swallowing
            time.sleep(30)
            print("not stopped")
        ''', path=[tmp_path])


def test_a_stop_the_command_accepts_is_its_normal_end(monkeypatch, capsys):
    """serve.py's end: SIGTERM is how a server is stopped. The command catches the stop,
    accepts it (Stopped.accept) and shuts down; no reminder raises in that shutdown, however
    long, and run_main exits with the command's own code, 0, and no error line. (serve.py
    caught the stop without accepting it: a reminder cut its shutdown short, exit 2.)"""
    import threading
    import common
    monkeypatch.setattr(common._StickyStop, 'REMIND_SECONDS', 0.01)
    reminders = []

    def server(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises here
            time.sleep(30)
        except KeyboardInterrupt as stop:
            stop.accept()
        # The shutdown, here as long as the reminder thread lives: without the accept a
        # reminder raises within 0.01 s, with it the thread ends.
        reminders.extend(t for t in threading.enumerate() if t.name == 'stop-reminder')
        reminders[0].join(timeout=30)
        return 0

    with pytest.raises(SystemExit) as done:
        common.run_main(server)
    assert done.value.code == 0 and len(reminders) == 1 and not reminders[0].is_alive()
    assert capsys.readouterr().err == ''


@pytest.mark.parametrize('signum, how', [(signal.SIGTERM, 'SIGTERM'),
                                         (signal.SIGINT, 'Ctrl-C (SIGINT)')])
def test_signal_during_export_leaves_nothing(tmp_path, checkpoint_path, signum, how):
    """SIGTERM (a job scheduler, `docker stop`, `kill`) or Ctrl-C while the ONNX is written."""
    out = tmp_path / 'centernet.onnx'
    process = subprocess.Popen([sys.executable, str(ROOT / 'export.py'), '--weight',
                                str(checkpoint_path), '--output', str(out), '--skip-check'],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=with_default_sigint)
    try:
        deadline = time.monotonic() + 240
        while not list(tmp_path.glob('.centernet.onnx.*.tmp')):  # the export has begun
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        process.send_signal(signum)
        _, err = process.communicate(timeout=240)
    finally:
        process.kill()
    assert process.returncode == 2, err
    assert err.strip().splitlines()[-1] == (f'error: stopped by {how}: no partial output was '
                                            'written; run the command again to start over')
    assert 'Traceback' not in err
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_a_performance_run(tmp_path, onnx_paths):
    """SIGTERM while inference.py is timing: the record is not written, nothing is left."""
    record = tmp_path / 'perf.json'
    process = subprocess.Popen([sys.executable, str(ROOT / 'inference.py'), '--engine',
                                str(onnx_paths['fp32']), '--perf_only', '--batchsize', '1',
                                '--warmup_seconds', '600', '--record', str(record), '--quiet'],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, 'PYTHONUNBUFFERED': '1'})
    try:
        assert process.stdout.readline().startswith('performance:')  # timing has begun
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=240)
    finally:
        process.kill()
    assert process.returncode == 2, err
    assert err.strip() == SIGTERM_STOPPED
    assert list(tmp_path.iterdir()) == []


# --- what mmdet accepts, the kit accepts --------------------------------------------------------

@pytest.mark.parametrize('variant', ['1-element', 'missing'])
def test_num_batches_tracked_of_old_pytorch(capsys, tmp_path, seeded_weights, dataset, variant):
    """PyTorch 0.4.0 saved BatchNorm's num_batches_tracked as shape (1,), before 0.4.1 there was
    none; torch's load_state_dict (so mmdet) loads both."""
    weights = {k: (v.reshape(1) if variant == '1-element' else None) if
               k.endswith('num_batches_tracked') else v for k, v in seeded_weights.items()}
    path = tmp_path / 'old.pth'
    torch.save({'state_dict': {k: v for k, v in weights.items() if v is not None}}, path)
    picture = sorted((dataset / 'images' / 'val2017').iterdir())[0]
    with pytest.raises(SystemExit) as code:
        run_main(inference.main, ['--weight', str(path), '--device', 'cpu', '--images',
                                  str(picture), '--out', str(tmp_path / 'out'), '--quiet'])
    assert code.value.code == 0, capsys.readouterr().err
    assert (tmp_path / 'out' / 'detections.json').is_file()


# --- models that are not ours -------------------------------------------------------------------

def test_onnx_without_our_metadata(capsys, tmp_path, onnx_paths, dataset):
    model = onnx.load(str(onnx_paths['fp32']))
    del model.metadata_props[:]
    other = tmp_path / 'other.onnx'
    onnx.save(model, str(other))
    fails_with(capsys, inference.main, ['--engine', str(other), '--datasets', str(dataset)],
               'is not a CenterNet ONNX from this kit', 'export it with export.py')


def test_onnx_with_wrong_io(capsys, tmp_path, onnx_paths, dataset):
    model = onnx.load(str(onnx_paths['fp32']))
    model.graph.output[0].name = 'scores'
    other = tmp_path / 'renamed.onnx'
    onnx.save(model, str(other))
    fails_with(capsys, inference.main, ['--engine', str(other), '--datasets', str(dataset)],
               "outputs ['scores', 'wh', 'offset']", "expected ['canvas']")


def test_not_an_onnx_file(capsys, tmp_path, dataset):
    junk = tmp_path / 'junk.onnx'
    junk.write_bytes(b'\x00junk')
    fails_with(capsys, inference.main, ['--engine', str(junk), '--datasets', str(dataset)],
               'junk.onnx is not an ONNX file')


def test_unknown_model_suffix(capsys, tmp_path, dataset):
    fails_with(capsys, inference.main, ['--engine', str(tmp_path / 'model.bin'),
                                        '--datasets', str(dataset)],
               "cannot tell the backend from", '--backend')


def test_wrong_input_name(capsys, onnx_paths, dataset):
    fails_with(capsys, inference.main, _infer(onnx_paths, dataset, '--input_name', 'input'),
               "--input_name 'input': the model's input is called 'canvas'")


def test_batch_beyond_a_static_model(capsys, static_paths, dataset):
    fails_with(capsys, inference.main, ['--engine', str(static_paths['fp32']), '--datasets',
                                        str(dataset), '--batchsize', '4'],
               "batch size 4 is beyond the onnxruntime model's maximum 2", 'lower --batchsize')


def test_bad_batch_size(capsys, onnx_paths, dataset):
    fails_with(capsys, inference.main, _infer(onnx_paths, dataset, '--batchsize', '0'),
               '--batchsize must be at least 1')


def test_bad_workers(capsys, onnx_paths, dataset):
    fails_with(capsys, inference.main, _infer(onnx_paths, dataset, '--workers', '-1'),
               '--workers must be 0')


def test_compile_with_a_backend_that_does_not_compile(capsys, onnx_paths, dataset):
    fails_with(capsys, inference.main, _infer(onnx_paths, dataset, '--compile', 'default'),
               '--compile is for the torch backend')


def test_compile_mode_with_its_own_cuda_graphs(capsys, checkpoint_path, dataset):
    fails_with(capsys, inference.main, ['--backend', 'torch', '--weight', str(checkpoint_path),
                                        '--device', 'cpu', '--datasets', str(dataset),
                                        '--compile', 'reduce-overhead'],
               '--compile reduce-overhead: choose one of default, max-autotune-no-cudagraphs')
