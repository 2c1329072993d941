"""Compare two detection lists as sets, the way the spec (§10) says "equal" must be judged.

Near-tied scores may swap rank under floating-point noise, and the 100th slot may go to either of
two boxes with (almost) the same score; so each detection of one list is looked up in the other by
label, box and score, and only detections scoring clearly above the lowest are required to match.
Used by the tests, export.py's --end2end check, tools/gpu_check.py and tools/parity_report.py.
"""

import numpy as np


def match_detections(boxes_a, scores_a, labels_a, boxes_b, scores_b, labels_b,
                     box_tol=1e-3, score_tol=1e-5):
    """Return (matched, required): detections of A found in B within tolerance.

    A detection is required when its score exceeds A's lowest score by more than score_tol.
    """
    boxes_b, scores_b, labels_b = (np.asarray(x) for x in (boxes_b, scores_b, labels_b))
    floor = float(np.min(scores_a)) + score_tol
    matched = required = 0
    used = np.zeros(len(scores_b), bool)
    for box, score, label in zip(boxes_a, scores_a, labels_a):
        if score <= floor:
            continue
        required += 1
        hits = np.flatnonzero(~used & (labels_b == label)
                              & (np.abs(scores_b - score) <= score_tol)
                              & (np.abs(boxes_b - box).max(axis=1) <= box_tol))
        if hits.size:
            used[hits[0]] = True
            matched += 1
    return matched, required


def match_rate(a, b, box_tol, score_tol):
    """(share, matched, required) of A's required detections found in B, over all images:
    a, b = (boxes (N, K, 4), scores (N, K), labels (N, K)), image by image in the same order."""
    matched = required = 0
    for image_a, image_b in zip(zip(*a), zip(*b), strict=True):
        m, r = match_detections(*image_a, *image_b, box_tol=box_tol, score_tol=score_tol)
        matched, required = matched + m, required + r
    return matched / max(required, 1), matched, required
