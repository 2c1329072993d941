"""The parts of a TensorRT build around the builder itself: a logger that keeps the errors, the
progress bars, and the timing cache file shared by builds.

Each takes the `tensorrt` module as an argument (engine_build.import_tensorrt), so the contract
tests can hand in tests/fake_tensorrt.py.
"""

import contextlib
import fcntl
import sys
import threading
from pathlib import Path

from .fileio import atomic_path


def make_logger(trt, stream=None):
    """A trt.ILogger that prints warnings and errors (as trt.Logger(WARNING) does) and keeps the
    errors, so that a failed build or load can say what TensorRT said instead of a guess."""

    class RecordingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)  # pybind11 base: must be initialised explicitly
            self.errors = []
            self.lock = threading.Lock()  # TensorRT logs from its own threads too

        def log(self, severity, msg):
            level = int(severity)
            if level > int(trt.ILogger.WARNING):
                return
            name = getattr(severity, 'name', str(level))
            line = ' '.join(str(msg).split())
            with self.lock:
                if level <= int(trt.ILogger.ERROR):
                    self.errors.append(line)
                print(f'[TensorRT {name}] {line}', file=stream or sys.stderr)

        def take_errors(self):
            """The errors logged since the last call."""
            with self.lock:
                errors, self.errors = self.errors, []
            return errors

    return RecordingLogger()


def make_build_progress(trt, warn=None):
    """A trt.IProgressMonitor (TensorRT >= 10.0) that shows the builder's phases as tqdm bars,
    each nested phase one line below its parent, at any depth; the caller keeps it alive until
    the build returns.

    No exception leaves its methods: TensorRT's binding turns an exception in step_complete into
    "cancel the build" (python/src/infer/pyCore.cpp, PyProgressMonitor), and a display problem
    must never cost the user a build of minutes. The first such problem is reported with `warn`.
    """
    from tqdm import tqdm

    warn = warn or (lambda message: print(message, file=sys.stderr))

    class BuildProgress(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)  # pybind11 base: must be initialised explicitly
            self.bars = {}    # phase name -> tqdm bar
            self.depths = {}  # phase name -> nesting depth (0: a top-level phase)
            self.failure = None
            self.lock = threading.Lock()  # TensorRT may report from its own threads

        def _guarded(self, action):
            try:
                with self.lock:
                    action()
            except Exception as exc:  # noqa: BLE001 - see the factory's docstring
                if self.failure is None:
                    self.failure = f'{type(exc).__name__}: {exc}'
                    warn(f'warning: the build progress display failed ({self.failure}); the '
                         'build goes on without it')

        def phase_start(self, phase_name, parent_phase, num_steps):
            def start():
                # The depth comes from the parent chain, not from the parent bar's position:
                # tqdm keeps a fixed position as its negative, so `pos + 1` would climb back
                # to the top line at the third level.
                depth = self.depths[parent_phase] + 1 if parent_phase in self.depths else 0
                self.depths[phase_name] = depth
                self.bars[phase_name] = tqdm(total=num_steps, desc='  ' * depth + phase_name,
                                             position=depth, leave=depth == 0, unit='step',
                                             dynamic_ncols=True)
            self._guarded(start)

        def step_complete(self, phase_name, step):
            def update():
                bar = self.bars.get(phase_name)
                if bar is not None:
                    bar.update(step + 1 - bar.n)
            self._guarded(update)
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            def finish():
                self.depths.pop(phase_name, None)
                bar = self.bars.pop(phase_name, None)
                if bar is not None:
                    bar.close()
            self._guarded(finish)

    return BuildProgress()


class TimingCacheFile:
    """TensorRT's kernel timings, kept on disk so that the next build skips most of the timing.

    A cache holds only the timings of one TensorRT version and GPU: TensorRT refuses another's
    in `create_timing_cache` (None, or an exception, with an error logged), and the build starts
    a fresh one. Builds may share the file (it sits next to the engines) and run at once, so the
    save does what NVIDIA's samples do (samples/common: updateTimingCacheFile): under an
    exclusive lock, read the file as it is now, combine this build's timings into it, write it
    back; and here atomically (temp file + rename), so a reader never sees half a cache.
    """

    def __init__(self, path, log=print):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + '.lock')
        self.log = log

    def attach(self, config):
        """Load the file (if any) into a timing cache, attach it to `config`, return the cache."""
        blob = self._read()
        cache = self._create(config, blob)
        if cache is None:
            self.log(f'timing cache: {self.path} is from another TensorRT version, or '
                     'damaged; starting a fresh one (the file is replaced after the build)')
            cache = self._create(config, b'')
        elif blob:
            self.log(f'timing cache: reusing {self.path}')
        if cache is not None and config.set_timing_cache(cache, False):
            return cache
        # False: the cache was timed on a device with other properties (NvInfer.h,
        # setTimingCache); its timings would mislead this GPU's build.
        self.log(f'timing cache: {self.path} was made on another GPU; starting a fresh one')
        cache = self._create(config, b'')
        if cache is None or not config.set_timing_cache(cache, False):
            self.log('timing cache: TensorRT refused a fresh one too; building without a cache')
            return None
        return cache

    def save(self, config, cache):
        """Combine this build's timings into the file, under the lock, atomically."""
        if cache is None:
            return
        with self._locked():
            on_disk = self._create(config, self._read()) if self.path.is_file() else None
            if on_disk is not None and on_disk.combine(cache, False):
                cache = on_disk  # another build's timings, saved meanwhile, are kept
            blob = cache.serialize()
            with atomic_path(self.path) as tmp:
                with open(tmp, 'wb') as f:
                    f.write(memoryview(blob))  # atomic_path fsyncs it before the rename

    def _read(self):
        return self.path.read_bytes() if self.path.is_file() else b''

    @staticmethod
    def _create(config, blob):
        try:
            return config.create_timing_cache(blob)
        except (RuntimeError, TypeError, ValueError):  # a damaged or foreign file
            return None

    @contextlib.contextmanager
    def _locked(self):
        # A separate lock file: the cache itself is replaced by rename, which would leave a
        # lock on the old inode.
        with open(self.lock_path, 'a') as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
