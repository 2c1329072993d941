"""The native model's GPU-path transforms, checked on the CPU (bfloat16 stands in for FP16)."""

import copy

import numpy as np
import torch

from centernet.onnx_export import random_canvases


def test_fused_batchnorm_computes_the_same(model):
    fused = copy.deepcopy(model).fuse_batchnorm()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    canvases = torch.from_numpy(random_canvases(2, 96, 128))
    with torch.no_grad():
        for a, b in zip(model(canvases), fused(canvases)):
            scale = max(1.0, float(a.abs().max()))
            assert float((a - b).abs().max()) <= 1e-4 * scale


def test_mixed_precision_keeps_the_fp32_islands_exact(model):
    mixed = copy.deepcopy(model).fuse_batchnorm().to_mixed_precision(torch.bfloat16)
    pre = mixed.data_preprocessor
    assert pre.mean.dtype == torch.float32
    assert pre.mean.flatten().tolist() == [np.float32(v) for v in model.spec.mean]
    assert pre.std.flatten().tolist() == [np.float32(v) for v in model.spec.std]
    for ours, original in zip(mixed.bbox_head.last_convs(), model.bbox_head.last_convs()):
        assert ours.weight.dtype == torch.float32
        assert torch.equal(ours.weight, original.weight) and torch.equal(ours.bias, original.bias)
    assert mixed.backbone.conv1.weight.dtype == torch.bfloat16
    assert mixed.neck.deconv_layers[5].conv.weight.dtype == torch.bfloat16
    assert mixed.bbox_head.heatmap_head[0].weight.dtype == torch.bfloat16
    canvases = torch.from_numpy(random_canvases(1, 64, 96))
    with torch.no_grad():
        outputs = mixed(canvases)
        reference = model(canvases)
    assert all(o.dtype == torch.float32 for o in outputs)
    assert float((outputs[0] - reference[0]).abs().max()) < 0.05  # bfloat16 noise, not garbage


def test_channel_order_is_a_buffer_not_in_the_state_dict(model):
    assert 'data_preprocessor.channel_order' not in model.state_dict()
    assert model.data_preprocessor.channel_order.tolist() == [2, 1, 0]


def test_cuda_graph_cache_captures_repeated_shapes_only(monkeypatch):
    """Shapes seen once run eagerly; the second sighting captures; at most max_graphs kept.
    (The capture itself needs a GPU; here it is a stub that records what would be captured.)"""
    from centernet.backends.torch_backend import CudaGraphCache
    eager_calls = []
    cache = CudaGraphCache(lambda x: eager_calls.append(tuple(x.shape)) or ('eager',),
                           max_graphs=2)
    captured = []

    def fake_capture(canvases):
        captured.append(tuple(canvases.shape))
        graph = type('Graph', (), {'replay': lambda self: None})()
        return graph, canvases.clone(), ('graph', tuple(canvases.shape))

    monkeypatch.setattr(cache, '_capture', fake_capture)
    shapes = [(1, 32, 32, 3), (1, 32, 32, 3), (1, 32, 32, 3), (2, 64, 32, 3), (2, 64, 32, 3),
              (4, 32, 64, 3), (4, 32, 64, 3)]
    results = [cache(torch.zeros(shape, dtype=torch.uint8)) for shape in shapes]
    assert captured == [(1, 32, 32, 3), (2, 64, 32, 3)]  # the third shape is beyond max_graphs
    assert results[0] == ('eager',) and results[1] == ('graph', (1, 32, 32, 3))
    assert results[2] == ('graph', (1, 32, 32, 3)) and results[6] == ('eager',)
    assert eager_calls == [(1, 32, 32, 3), (2, 64, 32, 3), (4, 32, 64, 3), (4, 32, 64, 3)]
