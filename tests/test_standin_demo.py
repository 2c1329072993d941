"""The bundled demo's scene cache (centernet.standin_demo): the stand-in's own splits, made once,
atomically, and never taken half made."""

import os

import pytest

from centernet import standin_demo, standin_scenes
from centernet.errors import UserError


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob('*') if p.is_file()}


def test_scenes_are_the_split_generated_once_and_reused(tmp_path, monkeypatch):
    """The same files as standin_scenes.write_split (the stand-in's test split); a second call
    reads the folder instead of writing it again; DEMO_CACHE says where it goes."""
    monkeypatch.setenv(standin_demo.CACHE_ENV, str(tmp_path / 'cache'))
    folder = standin_demo.scenes('test', 6)
    assert folder.parent.parent == tmp_path / 'cache'
    assert folder.name == 'test-6' and folder.parent.name.startswith('standin-')
    assert _files(folder) == _files(standin_scenes.write_split(tmp_path / 'reference', 'test', 6))
    written = {p: p.stat().st_mtime_ns for p in folder.rglob('*')}
    calls = []
    monkeypatch.setattr(standin_scenes, 'write_scenes', lambda *a: calls.append(a))
    assert standin_demo.scenes('test', 6) == folder and calls == []
    assert {p: p.stat().st_mtime_ns for p in folder.rglob('*')} == written
    assert sorted(p.name for p in folder.parent.iterdir()) == ['test-6']  # no temporary left


def test_an_interrupted_generation_is_never_taken(tmp_path, monkeypatch):
    """Ctrl-C halfway (some pictures written, no annotation file): no folder under the final
    name and no temporary one; the next call makes the whole split."""
    real = standin_scenes.save_coco_set

    def interrupted(folder, scenes, **kwargs):
        def some():
            for index, scene in enumerate(scenes):
                if index == 3:
                    raise KeyboardInterrupt
                yield scene
        real(folder, some(), **kwargs)
    monkeypatch.setattr(standin_scenes, 'save_coco_set', interrupted)
    with pytest.raises(KeyboardInterrupt):
        standin_demo.scenes('train', 5, root=tmp_path)
    assert [p for p in tmp_path.rglob('*') if p.is_file()] == []
    assert not any(tmp_path.rglob('train-5'))
    monkeypatch.setattr(standin_scenes, 'save_coco_set', real)
    folder = standin_demo.scenes('train', 5, root=tmp_path)
    assert len(list((folder / 'images' / 'val2017').iterdir())) == 5


def test_an_unusable_cache_is_one_line_naming_demo_cache(tmp_path):
    (tmp_path / 'file').write_text('not a folder')
    with pytest.raises(UserError, match=r'Not a directory; DEMO_CACHE=DIR puts the demo'):
        standin_demo.scenes('test', 2, root=tmp_path / 'file' / 'cache')


def test_cli_sizes_calibration_by_what_the_int8_gate_reads_too(tmp_path, monkeypatch, capsys):
    import demo_scenes
    from centernet.int8_quantize import GATE_IMAGES
    monkeypatch.setenv(standin_demo.CACHE_ENV, str(tmp_path))
    assert demo_scenes.main(['train', '--calib_images', '4']) == 0
    folder = capsys.readouterr().out.strip()
    assert folder.endswith(f'/train-{4 + GATE_IMAGES}')


def test_the_cli_on_a_warm_cache_imports_no_torch(tmp_path):
    """The scripts call it on every run to find the scenes: with them there, it prints the
    folder without importing torch (1.7 s of CPU before)."""
    import subprocess
    import sys
    from conftest import ROOT
    code = ('import sys; sys.path.insert(0, sys.argv[1]); import demo_scenes; '
            'demo_scenes.main(["test", "--count", "2"]); print("torch" in sys.modules)')
    env = dict(os.environ, **{standin_demo.CACHE_ENV: str(tmp_path)})
    standin_demo.scenes('test', 2, root=tmp_path)  # warm
    done = subprocess.run([sys.executable, '-c', code, str(ROOT)], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(standin_demo.scenes('test', 2, root=tmp_path)),
                                        'False']
