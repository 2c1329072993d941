"""The choice of backend: from its name, or from the model file's suffix, and its opening."""

from pathlib import Path

from ..errors import UserError

BACKENDS = ('auto', 'tensorrt', 'onnxruntime', 'torch')


def resolve_backend_name(backend, model_path):
    if backend != 'auto':
        return backend
    suffix = Path(model_path).suffix.lower() if model_path else ''
    if suffix == '.onnx':
        return 'onnxruntime'
    if suffix in ('.engine', '.plan', '.trt'):
        return 'tensorrt'
    if suffix in ('.pth', '.pt'):
        return 'torch'
    raise UserError(f'cannot tell the backend from {model_path!r}: use a .onnx, .engine/.plan or '
                    '.pth file, or pass --backend {onnxruntime,tensorrt,torch}')


def open_backend(backend, model_path=None, cfg=None, weight=None, device=None, **options):
    """Open the backend that `backend` names (or that the model file's suffix implies). A
    TensorRT engine (either runtime) whose self-check is pending is checked here, at its first
    load on a GPU, before it serves anything (engine.check.open_checked_engine)."""
    name = resolve_backend_name(backend, model_path or weight)
    if name == 'onnxruntime':
        from .onnxruntime_backend import OrtBackend
        return OrtBackend(model_path, **options)
    if name == 'tensorrt':
        from ..engine.check import open_checked_engine
        return open_checked_engine(model_path, **options)
    if name == 'torch':
        from .torch_backend import TorchBackend
        return TorchBackend(cfg, weight or model_path, device=device, **options)
    raise UserError(f'unknown backend {backend!r}; choose one of {", ".join(BACKENDS)}')
