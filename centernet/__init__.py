"""CenterNet-R18 deployment kit: mmdet's CenterNet without mmcv, exported to ONNX and TensorRT.

The data path, one module per step:

    dataset.py     image files + COCO annotation file  -> ordered records, canvas-shape batches
    preprocess.py  image file -> uint8 BGR canvas + border (mmdet's RandomCenterCropPad, test mode)
    model.py       canvas batch -> heatmap, wh, offset (normalisation inside the network)
    backends/      the model behind one interface: torch, ONNX Runtime, TensorRT
    decode.py      heads -> 100 boxes per image (mmdet's CenterNetHead decode), in torch
    evaluate.py    detections -> COCO results records -> COCO AP (faster-coco-eval or pycocotools)
    timing.py      where an accuracy run's wall time goes (stage table + run record)
"""

__version__ = '1.0.0'
