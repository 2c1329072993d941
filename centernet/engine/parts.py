"""The parts of a TensorRT build and run around the library itself: a logger that keeps what
TensorRT said, the build's progress bars, TensorRT's timing cache file shared by builds, and
TensorRT for RTX's runtime cache file beside an engine.

Each takes the `tensorrt` (or `tensorrt_rtx`) module as an argument (api.import_tensorrt), so the
contract tests can hand in tests/fake_tensorrt.py.
"""

import contextlib
import fcntl
import re
import sys
import threading
import time
from pathlib import Path

from ..errors import UserError
from ..fileio import atomic_path

# cudaErrorInsufficientDriver ("CUDA driver version is insufficient for CUDA runtime version"):
# what CUDA answers on a machine without an NVIDIA driver. TensorRT for RTX asks for the GPU in
# a few places even in a build that needs none (when it reports an error, and in the deprecated
# timing-cache calls), and logs each answer as an error of its own.
NO_DRIVER = 'cudaError 35'
_NO_DRIVER_REPORT = re.compile(r'\s*\[[\w.]+::catchCudaError::\d+\] Error Code \d+: Cuda Runtime '
                               r'\(In catchCudaError at \S+ \(cudaError 35: [^)]*\)\)')


def without_driver_reports(text):
    """`text` without TensorRT for RTX's reports of the missing CUDA driver (see NO_DRIVER)."""
    return _NO_DRIVER_REPORT.sub('', text).strip()


def make_logger(trt, stream=None, without_gpu=False):
    """A trt.ILogger that prints warnings and errors (as trt.Logger(WARNING) does) and keeps
    them, so that a failed build or load can say what TensorRT said instead of a guess.

    `without_gpu`: a build on a machine with no GPU (TensorRT for RTX): its reports of the missing
    CUDA driver are dropped, not printed and not kept; the build needs no driver, and a user would
    otherwise read them as the reason for whatever else failed.
    """

    class RecordingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)  # pybind11 base: must be initialised explicitly
            self.errors, self.warnings = [], []
            self.dropped = 0
            self.lock = threading.Lock()  # TensorRT logs from its own threads too

        def log(self, severity, msg):
            level = int(severity)
            if level > int(trt.ILogger.WARNING):
                return
            line = ' '.join(str(msg).split())
            with self.lock:
                if without_gpu and NO_DRIVER in line:
                    self.dropped += 1
                    return
                (self.errors if level <= int(trt.ILogger.ERROR) else self.warnings).append(line)
                name = getattr(severity, 'name', str(level))
                print(f'[TensorRT {name}] {line}', file=stream or sys.stderr)

        def take_errors(self):
            """The errors logged since the last call."""
            with self.lock:
                errors, self.errors = self.errors, []
            return errors

        def take_warnings(self):
            """The warnings logged since the last call."""
            with self.lock:
                warnings, self.warnings = self.warnings, []
            return warnings

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
            # Always True: False cancels the build, and so does None (a method that forgets to
            # return: the binding's cast to bool fails and its trampoline answers false).
            return True

        def phase_finish(self, phase_name):
            def finish():
                self.depths.pop(phase_name, None)
                bar = self.bars.pop(phase_name, None)
                if bar is not None:
                    # A finished phase is complete, whatever steps it reported (TensorRT for
                    # RTX reports 5 of "Building engine"'s 6).
                    if bar.total and bar.n < bar.total:
                        bar.update(bar.total - bar.n)
                    bar.close()
            self._guarded(finish)

    return BuildProgress()


class TimingCacheFile:
    """TensorRT's kernel timings, kept on disk so that the next build skips most of the timing
    (TensorRT 10.x / 11.x only: TensorRT for RTX times no kernels, and its timing-cache calls are
    deprecated no-ops).

    A cache holds only the timings of one TensorRT version and GPU. TensorRT does not refuse
    another's in `create_timing_cache`: it logs a warning ("Failed to deserialize timing cache.
    Returning an empty timing cache.") and returns an empty cache; so the file counts as reused
    only when TensorRT said nothing while reading it and `set_timing_cache` took it. Builds may
    share the file (it sits next to the engines) and run at once, so the save does what NVIDIA's
    samples do (samples/common: updateTimingCacheFile): under an exclusive lock, read the file
    as it is now, combine this build's timings into it, write it back; and here atomically (temp
    file + rename), so a reader never sees half a cache.
    """

    def __init__(self, path, log=print):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + '.lock')
        self.log = log

    def attach(self, config, logger):
        """Load the file (if any) into a timing cache, attach it to `config`, return the cache
        (None: the build goes without one). Says what TensorRT did with the file."""
        blob = self._read()
        logger.take_warnings()
        cache = self._create(config, blob)
        said = logger.take_errors() + logger.take_warnings()
        unused = cache is None or bool(blob and said)
        if unused:
            reason = said[-1] if said else 'TensorRT returned no cache'
            self.log(f'timing cache: {self.path} not used (TensorRT: {reason}): this build times '
                     'its kernels afresh, and the file is replaced after it')
            cache = self._create(config, b'') if cache is None else cache
        if cache is not None and config.set_timing_cache(cache, False):
            if not unused:
                self.log(f'timing cache: reusing {self.path} ({len(blob) / 2**10:.0f} KiB of '
                         'earlier timings)' if blob else f'timing cache: new; saved to '
                         f'{self.path} after the build')
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
        except (RuntimeError, TypeError, ValueError):  # a binding that raises instead
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


class RuntimeCacheFile:
    """TensorRT for RTX's JIT-compiled kernels (an IRuntimeCache), kept in a file beside the
    engine so that later runs skip the compiling.

    The library checks a loaded cache against this GPU, driver and library version
    (IRuntimeCache.deserialize returns False on any mismatch, and the cache stays empty); the
    file is then replaced at the next save. Saves are atomic (temp file + rename): processes
    that share the engine each write whole caches, the last one's wins, none is ever half
    written. A failed save costs only a recompile next time: it is a warning, not an error.

    A new input shape compiles new kernels in the middle of a run (a served request, a COCO
    batch), and the whole cache would be serialised and written with it: `grew` saves at most
    every SAVE_SECONDS, and `flush` (the backend's close, and the end of the process) writes
    what is left.
    """

    SAVE_SECONDS = 60.0

    def __init__(self, path, log=print):
        self.path = Path(path)
        self.log = log
        self.save_failed = False
        self.loaded = False
        self.unsaved = False
        self.last_save = time.monotonic()

    def load(self, cache):
        if not self.path.is_file():
            self.log(f'runtime cache: none at {self.path} yet: TensorRT for RTX compiles each '
                     'input shape\'s kernels the first time it comes, and they are saved there')
            return False
        blob = self.path.read_bytes()
        if cache.deserialize(blob):
            self.log(f'runtime cache: reusing the compiled kernels in {self.path} '
                     f'({len(blob) / 2**20:.1f} MiB)')
            self.loaded = True
            return True
        self.log(f'runtime cache: {self.path} was made for another GPU, driver or TensorRT for '
                 'RTX version (the library refused it): kernels compile afresh, and the file is '
                 'replaced')
        return False

    def grew(self, cache):
        """New kernels are in `cache` (a new input shape): saved now when the last save is
        SAVE_SECONDS old, else by a later `grew` or by `flush`."""
        self.unsaved = True
        if time.monotonic() - self.last_save >= self.SAVE_SECONDS:
            self.save(cache)

    def flush(self, cache):
        """Save what `grew` left unsaved; nothing when the engine's folder is gone."""
        if self.unsaved and self.path.parent.is_dir():
            self.save(cache)

    def save(self, cache):
        if cache is None:
            return
        blob = cache.serialize()
        self.unsaved, self.last_save = False, time.monotonic()
        try:
            with atomic_path(self.path) as tmp:
                with open(tmp, 'wb') as f:
                    f.write(memoryview(blob))
        except UserError as exc:
            if not self.save_failed:
                print(f'warning: the runtime cache was not saved ({exc}); the next run compiles '
                      'its kernels again', file=sys.stderr)
            self.save_failed = True
