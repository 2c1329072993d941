"""The TensorRT wing: a CenterNet ONNX -> an engine and its sidecar, and what checks it.

    api.py      the TensorRT library in use (TensorRT 10.x / 11.x or TensorRT for RTX 1.x):
                imports, versions, flags, dtypes, targets, run-time settings; the one place where
                the three differ
    profile.py  the optimisation profile: the input shapes an engine accepts
    parts.py    around the builder: the logger that keeps errors, progress bars, the timing
                cache (TensorRT) and the runtime cache (TensorRT for RTX) files
    sidecar.py  <engine>.json: what an engine was built from and for, and whether it is stale
    check.py    the self-check: an engine against ONNX Runtime CPU, after its build or at its
                first load on a GPU
    build.py    build_engine.py's work: parse, build, self-check, write

Imports point down the list the other way round: build -> check -> backends.tensorrt_backend ->
sidecar, parts, profile, api (tests/test_import_cycles.py holds them to it).
"""
