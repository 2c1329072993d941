"""The network behind one interface, whatever runs it.

    torch_backend.TorchBackend      the native model (CPU FP32; CUDA FP16 channels_last + graphs)
    onnxruntime_backend.OrtBackend  an exported .onnx on ONNX Runtime (CPU, or CUDA if installed)
    tensorrt_backend.TrtBackend     a serialized TensorRT engine (.engine / .plan)

Each takes a (B, H, W, 3) uint8 canvas batch and returns (heatmap, wh, offset) as torch tensors
on `backend.device`, where decode.decode_heads then runs.
"""

from .base import Backend, open_backend

__all__ = ['Backend', 'open_backend']
