"""Serving the detector through NVIDIA Triton Inference Server (serve.py, inference.py --server).

    repository.py    a Triton model repository: config.pbtxt files (Triton's own protobuf
                     definitions) and the kit copied or linked beside each Python-backend model
    triton_model.py  the Python-backend model Triton runs: request bytes -> decode_image ->
                     canvas batches per shape -> Detector -> one response (or error) per request
    server.py        the tritonserver that nvidia-pytriton ships, started and stopped for serve.py
    client.py        image bytes -> detections from a server; the accuracy mode's detection step

Everything here needs requirements-serve.txt; nothing else in the kit imports it.
"""

SERVE_REQUIREMENTS = 'pip install -r requirements-serve.txt'


def require(module, what):
    """Import `module`, or one UserError naming requirements-serve.txt."""
    import importlib
    from ..errors import UserError
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f'{what} needs nvidia-pytriton and tritonclient, which are not installed: '
                        f'{SERVE_REQUIREMENTS}') from None
