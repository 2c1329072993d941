"""Test helper: assert two detection lists are the same set (centernet.compare does the matching)."""

from centernet.compare import match_detections


def assert_same_detections(a, b, box_tol=1e-3, score_tol=1e-5, what=''):
    """a, b: (boxes, scores, labels) for one image. Every required detection must match."""
    matched, required = match_detections(*a, *b, box_tol=box_tol, score_tol=score_tol)
    assert required >= 50, f'{what}: only {required} detections above the floor: weak test'
    assert matched == required, f'{what}: {matched}/{required} detections matched'
