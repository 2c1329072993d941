"""The TensorRT library the kit runs on, and everything in which its flavours differ.

Two Python modules share TensorRT's ONNX parser and builder API:

    tensorrt      TensorRT 10.x / 11.x: builds on a GPU, times kernels there, and its engine runs
                  on that GPU model's architecture only.
    tensorrt_rtx  TensorRT for RTX 1.x: builds ahead of time without a GPU ("CPU-only AOT"), for a
                  set of compute capabilities (its targets); on the user's GPU a JIT step compiles
                  the kernels, kept in a runtime cache across runs. It has no timing cache (the
                  calls are deprecated no-ops) and no builder precision flags.

`--runtime auto` takes `tensorrt` when it imports, else `tensorrt_rtx`. TensorRTApi wraps the first
and RtxApi the second; the rest of the kit asks them, never the version numbers. Every `trt.X` the
kit names is checked against each library's own list of names (tests/test_tensorrt_api_names.py):
names used inside an `Rtx...` class only need to exist in TensorRT for RTX.
"""

import importlib
import re
from dataclasses import dataclass

from ..errors import UserError

RUNTIMES = ('auto', 'tensorrt', 'tensorrt-rtx')
MODULE_NAMES = {'tensorrt': 'tensorrt', 'tensorrt-rtx': 'tensorrt_rtx'}
MIN_TENSORRT_MAJOR = 10   # the name-based I/O API (set_tensor_address, execute_async_v3)
MIN_RTX_VERSION = (1, 7)  # the release whose names tests/fixtures/tensorrt_api_rtx-1.7.x.txt lists

ALTERNATIVES = ('or run without TensorRT: the ONNX Runtime backend (inference.py --engine '
                'model.onnx) or the torch backend (inference.py --backend torch --weight '
                'CHECKPOINT.pth --cfg CONFIG.py)')

# TensorRT DataType name -> torch dtype name, for the engine's I/O tensors.
TORCH_DTYPE_NAMES = {'FLOAT': 'float32', 'HALF': 'float16', 'BF16': 'bfloat16', 'INT8': 'int8',
                     'UINT8': 'uint8', 'INT32': 'int32', 'INT64': 'int64', 'BOOL': 'bool'}

# What a runtime that cannot open an engine says (Runtime.get_engine_validity's diagnostics,
# TensorRT for RTX), and what to do about it.
RTX_INVALIDITY_ADVICE = {
    'VERSION_MISMATCH': 'another TensorRT for RTX version built it: rebuild it',
    'UNSUPPORTED_CC': 'this GPU is not among its targets',
    'OLD_CUDA_DRIVER': 'the NVIDIA driver is older than TensorRT for RTX needs: update it',
    'OLD_CUDA_RUNTIME': 'the CUDA runtime is older than TensorRT for RTX needs: update it',
    'INSUFFICIENT_GPU_MEMORY': 'the GPU has too little free memory for it: free some',
    'MALFORMED_ENGINE': 'the file is not an engine TensorRT for RTX can read: rebuild it',
    'CUDA_ERROR': 'the CUDA driver or runtime is not installed correctly: reinstall the driver',
}


# --- the GPU ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # 'major.minor'


def visible_gpu():
    """The CUDA GPU torch uses now, or None when there is none."""
    import torch
    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return GpuInfo(torch.cuda.get_device_name(index), f'{major}.{minor}')


def current_gpu():
    """The CUDA GPU torch uses now; UserError naming the alternatives when there is none."""
    gpu = visible_gpu()
    if gpu is None:
        raise UserError(f'no CUDA GPU is visible (torch.cuda.is_available() is False) and '
                        f'TensorRT needs one: check the driver and CUDA_VISIBLE_DEVICES, '
                        f'{ALTERNATIVES}')
    return gpu


# --- the library ----------------------------------------------------------------------------------

def import_tensorrt(runtime='auto'):
    """TensorRTApi or RtxApi for `runtime` ('auto', 'tensorrt', 'tensorrt-rtx'); UserError naming
    what to install, and the alternatives, when it is not usable."""
    if runtime not in RUNTIMES:
        raise UserError(f'--runtime {runtime}: choose one of {", ".join(RUNTIMES)}')
    if runtime == 'auto':
        module, why = _load('tensorrt')
        if module is not None:
            return TensorRTApi.wrap(module)
        rtx, rtx_why = _load('tensorrt_rtx')
        if rtx is not None:
            return RtxApi.wrap(rtx)
        raise UserError(f'TensorRT is not usable here (tensorrt: {why}; tensorrt_rtx: {rtx_why}): '
                        f'install TensorRT 10 or 11 (pip install tensorrt) or TensorRT for RTX '
                        f'(pip install tensorrt-rtx), {ALTERNATIVES}')
    kind = RtxApi if runtime == 'tensorrt-rtx' else TensorRTApi
    module, why = _load(MODULE_NAMES[runtime])
    if module is None:
        raise UserError(f'{kind.title} is not usable here ({why}): install it '
                        f'({kind.install_hint}), {ALTERNATIVES}')
    return kind.wrap(module)


def _load(module_name):
    """(module, None), or (None, why not) in one line."""
    try:
        return importlib.import_module(module_name), None
    except (ImportError, OSError) as exc:  # OSError: the wheel is there, its libraries are not
        text = str(exc).splitlines()[0] if str(exc) else f'import {module_name} failed'
        return None, f'{type(exc).__name__}: {text}'


def version_tuple(version):
    """'10.8.0.43' -> (10, 8, 0, 43); the parts that are not numbers are left out."""
    return tuple(int(part) for part in re.findall(r'\d+', str(version)))


def torch_dtype_for(trt_dtype):
    """torch dtype for a TensorRT DataType, matched by name (enum values are no contract)."""
    import torch
    name = getattr(trt_dtype, 'name', str(trt_dtype).split('.')[-1])
    if name not in TORCH_DTYPE_NAMES:
        raise UserError(f'the engine uses TensorRT data type {name}, which this kit does not '
                        'handle: rebuild it from this kit\'s ONNX with build_engine.py')
    return getattr(torch, TORCH_DTYPE_NAMES[name])


@dataclass(frozen=True)
class Targets:
    """The GPUs an engine is built for: `request` as the user put it ('this GPU', 'portable',
    'current' or the list), `capabilities` the compute capabilities it stands for, and
    `members` the ComputeCapability values to set (None: the library's default)."""

    request: str
    capabilities: tuple
    members: tuple = None

    def describe(self):
        shown = ', '.join(self.capabilities)
        return shown if self.request in ('this GPU', 'list') else f'{self.request}: {shown}'


class TensorRTApi:
    """TensorRT 10.x / 11.x (module `tensorrt`): builds on a GPU, for that GPU."""

    runtime = 'tensorrt'
    title = 'TensorRT'
    install_hint = 'pip install tensorrt'
    builds_without_gpu = False
    has_timing_cache = True
    expected_build = ('TensorRT times candidate kernels on this GPU; how long that takes for '
                      'this model has not been measured yet (the sidecar records build_seconds)')

    def __init__(self, trt):
        self.trt = trt
        self.version = str(trt.__version__)

    @classmethod
    def wrap(cls, trt):
        api = cls(trt)
        api.check_version()
        return api

    def check_version(self):
        if self.major() < MIN_TENSORRT_MAJOR:
            raise UserError(f'TensorRT {self.version} is too old: this kit needs TensorRT 10 or 11 '
                            f'(pip install -U tensorrt), {ALTERNATIVES}')

    def major(self):
        return (version_tuple(self.version) or (0,))[0]

    def describe(self):
        return f'{self.title} {self.version}'

    def network_flags(self):
        """The create_network() flags for a strongly typed network, on TensorRT 10.x and 11.x.

        10.x: STRONGLY_TYPED opts in (EXPLICIT_BATCH, bit 0, is deprecated and ignored: every
        network is explicit batch). 11.x: every network is strongly typed; EXPLICIT_BATCH is gone
        and STRONGLY_TYPED is kept, deprecated and ignored, at another bit. So the bit is read
        from the enum, never hard-coded; a later release without the flag gets 0, which there
        means the same.
        """
        flag = getattr(self.trt.NetworkDefinitionCreationFlag, 'STRONGLY_TYPED', None)
        if flag is None:
            if self.major() < 11:
                raise UserError(f'TensorRT {self.version} has no strongly typed networks: '
                                'install TensorRT 10 or 11')
            return 0
        return 1 << int(flag)

    def gpu_for_build(self):
        """The GPU the build runs on (TensorRT times its kernels there)."""
        return current_gpu()

    def targets(self, request, gpu):
        """TensorRT builds for the GPU it runs on; --compute_capability is not its flag."""
        if request not in (None, 'current'):
            raise UserError(f'--compute_capability {request}: TensorRT builds for the GPU it runs '
                            f'on ({gpu.name}, sm {gpu.compute_capability}); the flag is for '
                            '--runtime tensorrt-rtx: drop it, or build with TensorRT for RTX')
        return Targets('this GPU', (gpu.compute_capability,))

    def configure_targets(self, config, targets):
        """Nothing to set: the engine is for the GPU the builder runs on."""

    def targets_set(self, config):
        """The targets as the builder config holds them (None: TensorRT has no such setting)."""
        return None

    def compatibility(self, record, gpu):
        """(errors, warnings): why this library cannot load the engine the sidecar `record`
        describes on `gpu`, and what only costs speed."""
        errors = _runtime_mismatch(record, self)
        if errors or gpu is None:
            return errors, []
        built_cc = record.get('compute_capability')
        if built_cc != gpu.compute_capability:
            errors.append(f'built for compute capability {built_cc} ({record.get("gpu")}), '
                          f'but this GPU ({gpu.name}) is {gpu.compute_capability}')
            return errors, []
        if record.get('gpu') != gpu.name:
            # Same architecture, another model: TensorRT loads it, tuned for the other card.
            return [], [f'built on {record.get("gpu")}, this GPU is {gpu.name}: it runs, but a '
                        'rebuild tunes it for this card']
        return [], []

    def engine_validity(self, runtime, blob):
        """(validity name, diagnostics) before deserialising, or None: TensorRT has no such
        query (its deserialize_cuda_engine answers, with an error logged)."""
        return None

    def create_context(self, engine, runtime_cache_file):
        """The execution context, and what must live as long as it (nothing here)."""
        return engine.create_execution_context(), None


class RtxApi(TensorRTApi):
    """TensorRT for RTX 1.x (module `tensorrt_rtx`): builds without a GPU, for target compute
    capabilities; compiles its kernels on the user's GPU (JIT) into a runtime cache.

    The default targets are the library's own: with no compute capability set it builds an
    engine that runs on "compute capability 8.0, 8.6, 8.9, 12.0, and later" (NVIDIA, "CPU-Only AOT
    and TensorRT-RTX Engines"), i.e. every member of its ComputeCapability enum from 8.0 up;
    Turing (7.5) only when asked for.
    """

    runtime = 'tensorrt-rtx'
    title = 'TensorRT for RTX'
    install_hint = 'pip install "tensorrt-rtx>=1.7"'
    builds_without_gpu = True
    has_timing_cache = False
    expected_build = ('TensorRT for RTX compiles ahead of time, without timing kernels: about a '
                      'second for this model on 2 CPU cores (docs/tensorrt.md); a short JIT on '
                      'the GPU follows at the first load')

    def check_version(self):
        if version_tuple(self.version)[:2] < MIN_RTX_VERSION:
            raise UserError(f'TensorRT for RTX {self.version} is too old: this kit needs 1.7 or '
                            f'later ({self.install_hint}), {ALTERNATIVES}')

    def network_flags(self):
        # Strongly typed is TensorRT for RTX's only kind of network; saying so avoids a warning
        # (NVIDIA's samples/apiUsage does the same).
        return 1 << int(self.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)

    def gpu_for_build(self):
        """The GPU, if any: the build needs none (CPU-only ahead-of-time compilation)."""
        return visible_gpu()

    def known_targets(self):
        """'major.minor' -> ComputeCapability member, for every SMxy the library knows."""
        known = {}
        for name, member in self.trt.ComputeCapability.__members__.items():
            match = re.fullmatch(r'SM(\d+)(\d)', name)
            if match:
                known[f'{int(match.group(1))}.{match.group(2)}'] = member
        return dict(sorted(known.items(), key=lambda item: version_tuple(item[0])))

    def portable_targets(self):
        return tuple(cc for cc in self.known_targets() if version_tuple(cc) >= (8, 0))

    def targets(self, request, gpu):
        known = self.known_targets()
        if request in (None, 'portable'):
            portable = Targets('portable', self.portable_targets())
            if gpu is not None and gpu.compute_capability not in portable.capabilities:
                raise UserError(self._portable_leaves_out(gpu, portable, known))
            return portable
        if request == 'current':
            if gpu is None:
                raise UserError('--compute_capability current needs a GPU, and none is visible '
                                '(torch.cuda.is_available() is False): on a machine without one '
                                'pass portable (the default) or a list, such as 8.6,8.9')
            if gpu.compute_capability not in known:
                raise UserError(rtx_does_not_target(gpu, known))
            return Targets('current', (gpu.compute_capability,),
                           (self.trt.ComputeCapability.CURRENT,))
        wanted = [part.strip() for part in str(request).split(',') if part.strip()]
        unknown = [cc for cc in wanted if cc not in known]
        if unknown or not wanted:
            what = (f'{", ".join(unknown)} {"is" if len(unknown) == 1 else "are"} not among them'
                    if unknown else 'it names none')
            raise UserError(f'--compute_capability {request!r}: TensorRT for RTX {self.version} '
                            f'builds for portable (its default), current (this GPU) or a comma '
                            f'list of {", ".join(known)}; {what}')
        wanted = list(dict.fromkeys(wanted))
        return Targets('list', tuple(wanted), tuple(known[cc] for cc in wanted))

    @staticmethod
    def _portable_leaves_out(gpu, portable, known):
        """Why a portable build on `gpu`, which is not among the portable targets, is refused:
        the engine could never run on the GPU the user has."""
        if gpu.compute_capability not in known:  # Hopper: no build of TensorRT for RTX runs
            return rtx_does_not_target(gpu, known)
        return (f'TensorRT for RTX\'s portable targets ({", ".join(portable.capabilities)}) '
                f'leave out this GPU ({gpu.name}, sm {gpu.compute_capability}), so the engine '
                f'could not run here: pass --compute_capability current (this GPU only), or a '
                f'list with {gpu.compute_capability} in it (such as '
                f'{gpu.compute_capability},{portable.capabilities[0]})')

    def configure_targets(self, config, targets):
        if targets.members is None:  # the library's portable default: nothing set
            return
        config.num_compute_capabilities = len(targets.members)
        for index, member in enumerate(targets.members):
            if not config.set_compute_capability(member, index):
                raise UserError(f'TensorRT for RTX refused compute capability {member.name} as '
                                f'target {index}: pass --compute_capability portable')

    def targets_set(self, config):
        """[] for the library's default, else the ComputeCapability names, read back."""
        return [config.get_compute_capability(index).name
                for index in range(config.num_compute_capabilities)]

    def compatibility(self, record, gpu):
        errors = _runtime_mismatch(record, self)
        if errors or gpu is None:
            return errors, []
        targets = record.get('targets') or []
        if gpu.compute_capability not in targets:
            errors.append(f'built for compute capabilities {", ".join(targets) or "unknown"}, '
                          f'and this GPU ({gpu.name}) is {gpu.compute_capability}')
        return errors, []

    def engine_validity(self, runtime, blob):
        """(validity name, [diagnostic names]) from Runtime.get_engine_validity: whether this GPU,
        driver and library can run the engine, asked before deserialising it."""
        validity, diagnostics = runtime.get_engine_validity(blob)
        flags = int(diagnostics)
        reasons = [name for name, member in self.trt.EngineInvalidityDiagnostics.__members__.items()
                   if flags & int(member)]
        return validity.name, reasons

    def create_context(self, engine, runtime_cache_file):
        """The execution context through an IRuntimeConfig: the runtime cache file's kernels
        loaded, and EAGER shape specialisation.

        LAZY, the library's default, runs a new input shape on a generic fallback kernel while the
        specialised one compiles in the background; a self-check or a timing would then judge
        kernels that later runs do not use. EAGER compiles the specialised kernel the first time a
        shape comes (blocking) and uses it from then on; the runtime cache keeps it for later
        runs. CUDA graphs stay off (the library's default): unmeasured here.
        """
        trt = self.trt
        config = engine.create_runtime_config()
        config.dynamic_shapes_kernel_specialization_strategy = \
            trt.DynamicShapesKernelSpecializationStrategy.EAGER
        config.cuda_graph_strategy = trt.CudaGraphStrategy.DISABLED
        cache = config.create_runtime_cache()
        runtime_cache_file.load(cache)
        config.set_runtime_cache(cache)
        context = engine.create_execution_context(runtime_config=config)
        return context, (config, cache)


def _runtime_mismatch(record, api):
    built_runtime = record.get('runtime', 'tensorrt')
    built_version = record.get('runtime_version', record.get('tensorrt'))
    if built_runtime != api.runtime or built_version != api.version:
        title = RtxApi.title if built_runtime == RtxApi.runtime else TensorRTApi.title
        return [f'built with {title} {built_version}, but {api.describe()} is installed']
    return []


def rtx_does_not_target(gpu, known, command=None):
    """The line for a GPU TensorRT for RTX builds for in no way (Hopper: 9.0); `command`: the
    TensorRT 10/11 build that replaces the user's engine."""
    use = (f'install TensorRT (pip install tensorrt) and build with it: {command}, ' if command
           else 'use TensorRT (pip install tensorrt, --runtime tensorrt), ')
    return (f'TensorRT for RTX does not target this GPU ({gpu.name}, sm {gpu.compute_capability}): '
            f'it builds for compute capabilities {", ".join(known)}; {use}{ALTERNATIVES}')


def runtime_for_this_gpu():
    """What the shell scripts run on this machine's GPU: ('tensorrt' | 'tensorrt-rtx' | None,
    why, in one line for the user). TensorRT when it imports; else TensorRT for RTX when this
    GPU is one it builds for; else None (the scripts then take PyTorch CUDA)."""
    gpu = visible_gpu()
    if gpu is None:
        return None, 'no CUDA GPU is visible'
    try:
        return import_tensorrt('tensorrt').runtime, f'TensorRT imports, on {gpu.name}'
    except UserError:
        pass
    try:
        rtx = import_tensorrt('tensorrt-rtx')
    except UserError:
        return None, 'neither TensorRT nor TensorRT for RTX is installed (see docs/tensorrt.md)'
    if gpu.compute_capability not in rtx.known_targets():
        return None, (f'TensorRT is not installed, and TensorRT for RTX does not target this GPU '
                      f'({gpu.name}, sm {gpu.compute_capability})')
    return rtx.runtime, (f'TensorRT is not installed; TensorRT for RTX {rtx.version} targets this '
                         f'GPU ({gpu.name}, sm {gpu.compute_capability})')
