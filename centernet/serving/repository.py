"""A Triton model repository for the detector: the folders and config.pbtxt files Triton loads.

Two layouts (docs/serving.md, "Model repository"):

    python    centernet/           the kit's Python-backend model (triton_model.DetectorStep):
                                   any backend open_backend opens (TensorRT, ONNX Runtime, torch);
                                   what serve.py serves
    ensemble  centernet/           an ensemble of three steps, for a stand-alone tritonserver:
              centernet_preprocess/   Python backend: image bytes -> canvas + border
              centernet_network/      the engine as `tensorrt_plan` (or the ONNX as
                                      `onnxruntime_onnx`; `--network python`: the kit's backend,
                                      the only one for TensorRT for RTX engines and torch)
              centernet_postprocess/  Python backend: heads + border -> detections

Every config is built as Triton's own protobuf message (tritonclient's model_config_pb2) and
written in its text format, so a field Triton does not know cannot be written. Each Python-backend
model gets the kit (the `centernet` package and coco_labels.py) beside its model.py; the Python
backend puts that folder on sys.path. Dynamic batching is on everywhere: Triton batches only
requests whose inputs have equal shapes, so the network and decode steps see canvas-shape batches,
as inference.py's loader makes them.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import contract
from ..errors import UserError

KIT_ROOT = Path(__file__).resolve().parents[2]  # the folder holding centernet/ and coco_labels.py
KIT_FILES = ('centernet', 'coco_labels.py')
MODEL_PY = ('"""Triton Python backend entry point: the CenterNet kit\'s model (%s step)."""\n\n'
            'from centernet.serving.triton_model import TritonPythonModel  # noqa: F401\n')
NATIVE_PLATFORMS = {'tensorrt': ('tensorrt_plan', 'model.plan'),
                    'onnxruntime': ('onnxruntime_onnx', 'model.onnx')}
LAYOUTS = ('python', 'ensemble')
NETWORKS = ('native', 'python')


@dataclass
class ServedModel:
    """What is served, from the backend opened once by serve.py: the model file(s) and
    open_backend's options, and what the configs say about the model."""

    backend: str        # open_backend's name of it
    model_file: Path
    cfg_file: Path      # the torch backend's mmdet config, else None
    options: dict       # open_backend's keyword arguments (device, precision, threads, ...)
    spec: object        # config.CenterNetSpec
    classes: tuple
    max_canvas: tuple   # (height, width): larger canvases are refused, request by request
    gpu: bool           # the backend runs on a GPU: KIND_GPU instances
    describe: dict      # backend.describe()
    extra_files: tuple = ()  # what else goes beside the model (a pending self-check's ONNX)

    def files(self):
        """The files the backend reads: the model, its `<file>.json` sidecar and
        `<file>.runtime_cache` where there are (a TensorRT engine's build record; TensorRT for
        RTX's compiled kernels, so a new server starts without compiling them again), the
        extra files, and the torch backend's config."""
        beside = [self.model_file.with_name(self.model_file.name + suffix)
                  for suffix in ('.json', '.runtime_cache')]
        found = [self.model_file] + [path for path in beside if path.is_file()]
        return found + [Path(path) for path in self.extra_files] + (
            [self.cfg_file] if self.cfg_file else [])


def native_platform(served):
    """(Triton platform, model file name) of a Triton backend that runs the network itself, or
    None: no Triton backend runs the torch model, and Triton's TensorRT backend loads TensorRT
    10/11 plans, not TensorRT for RTX engines."""
    if served.describe.get('runtime') == 'tensorrt-rtx':
        return None
    return NATIVE_PLATFORMS.get(served.backend)


@dataclass
class Batching:
    max_batch: int = 32
    instances: int = 1
    max_queue_delay_us: int = 2000


def write_repository(folder, served, batching, layout='python', network='native', link=False,
                     model=contract.MODEL):
    """Write the models into `folder` (a new or empty one); clients call `model`. `link`:
    symlink the kit and the model files instead of copying them (serve.py's temporary
    repository); a written repository stands alone."""
    if layout not in LAYOUTS:
        raise UserError(f'unknown layout {layout!r}; choose one of {", ".join(LAYOUTS)}')
    folder = Path(folder)
    writer = _Writer(folder, served, batching, link)
    if layout == 'python':
        writer.python_model(model, 'detector', _image_inputs(), _detection_outputs(served),
                            gpu=served.gpu, backend_files=True)
        return folder
    preprocess, network_step, postprocess = contract.ensemble_steps(model)
    if network == 'native':
        if served.describe.get('runtime') == 'tensorrt-rtx':
            raise UserError(f'{served.model_file} is a TensorRT for RTX engine, and Triton\'s '
                            'TensorRT backend (tensorrt_plan) loads TensorRT 10/11 plans only: '
                            'pass --network python (the kit runs the engine inside Triton\'s '
                            'Python backend; the default for this engine) or --layout python, or '
                            'build the engine with TensorRT (build_engine.py --runtime tensorrt)')
        if native_platform(served) is None:
            raise UserError(f'no Triton backend runs the kit\'s {served.backend} models natively: '
                            'pass --network python (the kit runs the network inside Triton\'s '
                            'Python backend) or --layout python')
        writer.native_network(network_step)
    elif network == 'python':
        writer.python_model(network_step, 'network', _canvas_inputs(), _head_outputs(served),
                            gpu=served.gpu, backend_files=True)
    else:
        raise UserError(f'unknown network {network!r}; choose one of {", ".join(NETWORKS)}')
    writer.python_model(preprocess, 'preprocess', _image_inputs(),
                        _canvas_inputs() + [_tensor(contract.BORDER, 'TYPE_FP32', [4])])
    writer.python_model(postprocess, 'postprocess',
                        _head_outputs(served) + [_tensor(contract.BORDER, 'TYPE_FP32', [4])],
                        _detection_outputs(served))
    writer.ensemble(model, (preprocess, network_step, postprocess))
    return folder


def _tensor(name, data_type, dims):
    return dict(name=name, data_type=data_type, dims=list(dims))


def _image_inputs():
    return [_tensor(contract.IMAGE, 'TYPE_STRING', [1])]


def _canvas_inputs():
    return [_tensor(contract.CANVAS, 'TYPE_UINT8', [-1, -1, 3])]


def _head_outputs(served):
    channels = dict(heatmap=len(served.classes), wh=2, offset=2)
    return [_tensor(name, 'TYPE_FP32', [channels[name], -1, -1]) for name in contract.HEADS]


def _detection_outputs(served):
    topk = served.spec.topk
    types = dict(boxes=('TYPE_FP32', [topk, 4]), scores=('TYPE_FP32', [topk]),
                 labels=('TYPE_INT64', [topk]), category_ids=('TYPE_INT32', [topk]),
                 names=('TYPE_STRING', [topk]))
    return [_tensor(name, *types[name]) for name in contract.OUTPUTS]


class _Writer:
    def __init__(self, folder, served, batching, link):
        import dataclasses
        self.folder, self.served, self.batching, self.link = folder, served, batching, link
        self.shared = {contract.SPEC: json.dumps(dataclasses.asdict(served.spec)),
                       contract.CLASSES: json.dumps(list(served.classes)),
                       contract.MAX_CANVAS: json.dumps(list(served.max_canvas)),
                       contract.DESCRIBE: json.dumps(served.describe)}
        self.configs = {}  # model name -> ModelConfig, for the ensemble's wiring

    def _config(self, name, inputs, outputs, gpu=False, **fields):
        from tritonclient.grpc import model_config_pb2 as mc
        config = mc.ModelConfig(name=name, max_batch_size=self.batching.max_batch, **fields)
        for tensor, target in [(t, config.input) for t in inputs] + \
                              [(t, config.output) for t in outputs]:
            target.add(name=tensor['name'], data_type=mc.DataType.Value(tensor['data_type']),
                       dims=tensor['dims'])
        if fields.get('platform') != 'ensemble':
            config.dynamic_batching.max_queue_delay_microseconds = self.batching.max_queue_delay_us
            kind = mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU
            config.instance_group.add(count=self.batching.instances, kind=kind)
        self.configs[name] = config
        return config

    def _save(self, config):
        from google.protobuf import text_format
        model_folder = self.folder / config.name
        (model_folder / '1').mkdir(parents=True, exist_ok=True)
        (model_folder / 'config.pbtxt').write_text(text_format.MessageToString(config))
        return model_folder / '1'

    def _place(self, source, target):
        if self.link:
            target.symlink_to(Path(source).resolve())
        elif Path(source).is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copyfile(source, target)

    def python_model(self, name, role, inputs, outputs, gpu=False, backend_files=False):
        config = self._config(name, inputs, outputs, gpu=gpu, backend='python')
        parameters = dict(self.shared, **{contract.ROLE: role})
        if backend_files:
            served = self.served
            parameters.update({contract.BACKEND: served.backend,
                               contract.MODEL_FILE: served.model_file.name,
                               contract.OPTIONS: json.dumps(served.options)})
            if served.cfg_file:
                parameters[contract.CONFIG_FILE] = served.cfg_file.name
        for key, value in parameters.items():
            config.parameters[key].string_value = value
        version = self._save(config)
        (version / 'model.py').write_text(MODEL_PY % role)
        for kit_file in KIT_FILES:
            self._place(KIT_ROOT / kit_file, version / kit_file)
        if backend_files:
            for file in self.served.files():
                self._place(file, version / file.name)

    def native_network(self, name):
        platform, filename = native_platform(self.served)
        config = self._config(name, _canvas_inputs(), _head_outputs(self.served),
                              gpu=self.served.gpu, platform=platform,
                              default_model_filename=filename)
        version = self._save(config)
        self._place(self.served.model_file, version / filename)

    def ensemble(self, name, steps):
        first, last = self.configs[steps[0]], self.configs[steps[-1]]
        config = self._config(name, [], [], platform='ensemble')
        config.input.extend(first.input)
        config.output.extend(last.output)
        ensemble_inputs = {t.name for t in config.input}
        ensemble_outputs = {t.name for t in config.output}
        for step in steps:
            # Every tensor between steps is named after itself; the ensemble's own inputs and
            # outputs keep their names, the intermediate ones are prefixed.
            def routed(tensor):
                return tensor if tensor in ensemble_inputs | ensemble_outputs else f'_{tensor}'
            entry = config.ensemble_scheduling.step.add(model_name=step, model_version=-1)
            for tensor in self.configs[step].input:
                entry.input_map[tensor.name] = routed(tensor.name)
            for tensor in self.configs[step].output:
                entry.output_map[tensor.name] = routed(tensor.name)
        for key, value in self.shared.items():
            config.parameters[key].string_value = value
        self._save(config)
