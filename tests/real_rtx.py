"""The real TensorRT for RTX module for the tests that hold the kit and its fake to it.

`tensorrt_rtx` (requirements-test.txt: tensorrt-rtx 1.7.x) installs on any x86-64 Linux machine and
builds engines without a GPU; where it cannot be imported, the tests that need it skip, all with
this one reason.
"""

import importlib
import types

import pytest

REASON = ('tensorrt_rtx (TensorRT for RTX) cannot be imported here: pip install '
          '"tensorrt-rtx>=1.7,<1.8" (requirements-test.txt) to build with the real builder')


def load():
    try:
        return importlib.import_module('tensorrt_rtx')
    except (ImportError, OSError):
        return None


rtx = load()
requires_rtx = pytest.mark.skipif(rtx is None, reason=REASON)


def parse(onnx_path):
    """The real ONNX parser on `onnx_path`, its log kept quiet (the caller reads the parser's
    errors): .parsed, .network, .parser, and the builder and logger they need alive."""
    class Quiet(rtx.ILogger):
        def __init__(self):
            rtx.ILogger.__init__(self)

        def log(self, severity, msg):
            pass

    logger = Quiet()
    builder = rtx.Builder(logger)
    network = builder.create_network(1 << int(rtx.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = rtx.OnnxParser(network, logger)
    return types.SimpleNamespace(parsed=parser.parse_from_file(str(onnx_path)), network=network,
                                 parser=parser, builder=builder, logger=logger)
