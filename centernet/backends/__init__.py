"""The network behind one interface, whatever runs it.

    torch_backend.TorchBackend      the native model (CPU FP32; CUDA FP16 channels_last + graphs)
    onnxruntime_backend.OrtBackend  an exported .onnx on ONNX Runtime (CPU, or CUDA if installed)
    tensorrt_backend.TrtBackend     a serialized TensorRT engine (.engine / .plan), built by
                                    TensorRT 10/11 or TensorRT for RTX (centernet.engine)

Each takes a (B, H, W, 3) uint8 canvas batch and returns (heatmap, wh, offset) as torch tensors
on `backend.device`, where decode.decode_heads then runs.
factory.open_backend opens the one a name or a model file's suffix asks for.
"""

from .base import Backend
from .factory import BACKENDS, open_backend, resolve_backend_name

__all__ = ['BACKENDS', 'Backend', 'open_backend', 'resolve_backend_name']
