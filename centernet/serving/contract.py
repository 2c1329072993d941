"""What a served CenterNet takes and answers: model names, tensor names, config parameters.

One request carries one encoded image (JPEG/PNG/... bytes, as the file holds them) in `image`,
shape (1, 1) BYTES (a batch of n images: (n, 1)); the answer holds per image the model's top-k
detections, best first, no threshold (as inference.py's accuracy mode):
    boxes         (n, topk, 4) FP32  xyxy in the original image's pixels
    scores        (n, topk)    FP32
    labels        (n, topk)    INT64 the model's class index (0..num_classes-1)
    category_ids  (n, topk)    INT32 the COCO category id of that class (-1: not a COCO class)
    names         (n, topk)    BYTES the class name
"""

from .. import onnx_export

MODEL = 'centernet'  # what clients call, whichever layout serves it
CANVAS, HEADS = onnx_export.INPUT_NAME, onnx_export.OUTPUT_NAMES  # the network's tensors
IMAGE = 'image'
OUTPUTS = ('boxes', 'scores', 'labels', 'category_ids', 'names')


def ensemble_steps(model=MODEL):
    """The ensemble layout's step models (repository.write_repository(layout='ensemble')):
    preprocess, network, postprocess."""
    return f'{model}_preprocess', f'{model}_network', f'{model}_postprocess'


PREPROCESS, NETWORK, POSTPROCESS = ensemble_steps()
BORDER = 'border'  # preprocess -> postprocess, beside CANVAS (preprocess -> network)

# config.pbtxt `parameters` the Python-backend model reads, and that clients read from
# GET /v2/models/centernet/config (classes and top-k: what inference.py --server needs).
ROLE = 'centernet.role'            # detector | preprocess | network | postprocess
BACKEND = 'centernet.backend'      # open_backend's name: tensorrt, onnxruntime, torch
MODEL_FILE = 'centernet.model'     # the model file, relative to the version folder
CONFIG_FILE = 'centernet.cfg'      # the torch backend's mmdet config, relative likewise
OPTIONS = 'centernet.options'      # JSON: open_backend's keyword arguments
SPEC = 'centernet.spec'            # JSON: config.CenterNetSpec
CLASSES = 'centernet.classes'      # JSON: the class names, label order
MAX_CANVAS = 'centernet.max_canvas'  # JSON [height, width]: larger canvases are refused
DESCRIBE = 'centernet.describe'    # JSON: backend.describe() when the repository was written
