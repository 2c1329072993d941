"""CenterNet-R18 in plain PyTorch, with mmdet's state_dict names and mmdet's arithmetic.

    canvas (B, H, W, 3) uint8 BGR
      -> DataPreprocessor   BGR->RGB, (x - mean) / std            (mmdet DetDataPreprocessor)
      -> ResNet             stem + 4 stages, only the stride-32 map is used
      -> CTResNetNeck       3 x (3x3 conv-BN-ReLU, 4x4 stride-2 deconv-BN-ReLU) -> stride 4, 64 ch
      -> CenterNetHead      heatmap (sigmoid), wh, offset; all at stride 4

Module and parameter names follow mmdet 3.3.0 exactly (ResNet = torchvision's names, the neck's
`deconv_layers.N.{conv,bn}`, the head's `{heatmap,wh,offset}_head.{0,2}`), so an mmdet
checkpoint loads with strict=True. BatchNorm stays a separate op, as in mmdet; the ONNX export
lets the graph optimiser fold it.
"""

import torch
from torch import nn

from .config import RESNET_BASIC_BLOCK_STAGES, CenterNetSpec


class DataPreprocessor(nn.Module):
    """uint8 BGR NHWC canvas -> float32 normalised RGB NCHW, exactly DetDataPreprocessor's math.

    Canvas padding is raw 0 here, i.e. about -2 after normalisation, as in mmdet. The mean/std
    buffers are non-persistent (not in the state_dict), as in mmdet.
    """

    def __init__(self, mean, std, bgr_to_rgb):
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        # A buffer, not a Python list index: a list would be copied to the GPU on every call
        # (a host sync, and an error inside CUDA graph capture). Exports as one Gather.
        self.register_buffer('channel_order', torch.tensor([2, 1, 0] if bgr_to_rgb else [0, 1, 2]),
                             persistent=False)

    def forward(self, canvas):
        # Cast first: TensorRT accepts a uint8 input only when it feeds a Cast directly.
        x = canvas.float().permute(0, 3, 1, 2).index_select(1, self.channel_order)
        # True division by std (mmengine's order), not multiplication by 1/std: bit-exact parity.
        return (x - self.mean) / self.std


def _as_dtype(x, dtype):
    """Cast only when needed: a traced no-op cast would put a stray Cast node in the ONNX graph."""
    return x if x.dtype == dtype else x.to(dtype)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision-style ResNet without avgpool/fc; returns only the last (stride-32) stage."""

    def __init__(self, depth=18):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_planes = 64
        for index, (blocks, planes) in enumerate(zip(RESNET_BASIC_BLOCK_STAGES[depth],
                                                     (64, 128, 256, 512))):
            stride = 1 if index == 0 else 2
            layer = [BasicBlock(in_planes, planes, stride)]
            layer += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
            self.add_module(f'layer{index + 1}', nn.Sequential(*layer))
            in_planes = planes
        self.out_channels = in_planes

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ConvModule(nn.Sequential):
    """mmcv ConvModule without bias (a BN follows): conv -> bn -> ReLU, names `conv`, `bn`."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm2d(conv.out_channels)
        self.activate = nn.ReLU(inplace=True)


class CTResNetNeck(nn.Module):
    """Upsample the stride-32 map to stride 4: per stage a 3x3 conv, then a 4x4/2 deconv."""

    def __init__(self, in_channels, filters):
        super().__init__()
        layers = []
        for channels in filters:
            layers.append(ConvModule(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)))
            layers.append(ConvModule(nn.ConvTranspose2d(channels, channels, 4, stride=2,
                                                        padding=1, output_padding=0, bias=False)))
            in_channels = channels
        self.deconv_layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.deconv_layers(x)


def _head_branch(in_channels, feat_channels, out_channels):
    return nn.Sequential(nn.Conv2d(in_channels, feat_channels, 3, padding=1),
                         nn.ReLU(inplace=True),
                         nn.Conv2d(feat_channels, out_channels, 1))


class CenterNetHead(nn.Module):
    """Three branches on the stride-4 map: class heatmap (sigmoid), box size, centre offset.

    wh and offset are raw, in feature-map (stride-4) units: wh[0]=w, wh[1]=h, offset[0]=dx,
    offset[1]=dy.
    """

    def __init__(self, in_channels, feat_channels, num_classes):
        super().__init__()
        self.heatmap_head = _head_branch(in_channels, feat_channels, num_classes)
        self.wh_head = _head_branch(in_channels, feat_channels, 2)
        self.offset_head = _head_branch(in_channels, feat_channels, 2)

    @staticmethod
    def _branch(branch, x):
        # The last 1x1 conv runs in its own weights' dtype: FP32 in the FP16 model, like the FP16
        # ONNX (scores near 1 and box sizes keep FP32 resolution). A no-op in the FP32 model.
        conv3x3, relu, conv1x1 = branch
        return conv1x1(_as_dtype(relu(conv3x3(x)), conv1x1.weight.dtype))

    def forward(self, x):
        return (self._branch(self.heatmap_head, x).sigmoid(), self._branch(self.wh_head, x),
                self._branch(self.offset_head, x))

    def last_convs(self):
        return [branch[2] for branch in (self.heatmap_head, self.wh_head, self.offset_head)]


class CenterNet(nn.Module):
    """canvas (B, H, W, 3) uint8 BGR, H and W multiples of 32 -> (heatmap, wh, offset)."""

    def __init__(self, spec: CenterNetSpec):
        super().__init__()
        self.spec = spec
        self.data_preprocessor = DataPreprocessor(spec.mean, spec.std, spec.bgr_to_rgb)
        self.backbone = ResNet(spec.depth)
        self.neck = CTResNetNeck(spec.neck_in_channels, spec.deconv_filters)
        self.bbox_head = CenterNetHead(spec.head_in_channels, spec.head_feat_channels,
                                       spec.num_classes)

    def forward(self, canvas):
        return self.forward_normalized(self.data_preprocessor(canvas))

    def fuse_batchnorm(self):
        """Fold every BatchNorm into the conv before it, in FP32 (inference only; the GPU path).

        Fewer kernels, and FP16 weights made from folded FP32 values rather than FP16 BN
        arithmetic. The CPU reference path keeps BN separate, as mmdet does, to stay bit-exact.
        """
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        def fold(parent, conv_name, bn_name):
            conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
            fused = fuse_conv_bn_eval(conv.eval(), bn.eval(),
                                      transpose=isinstance(conv, nn.ConvTranspose2d))
            setattr(parent, conv_name, fused)
            setattr(parent, bn_name, nn.Identity())

        fold(self.backbone, 'conv1', 'bn1')
        for block in self.backbone.modules():
            if isinstance(block, BasicBlock):
                fold(block, 'conv1', 'bn1')
                fold(block, 'conv2', 'bn2')
                if block.downsample is not None:
                    fold(block.downsample, '0', '1')
        for module in self.neck.deconv_layers:
            fold(module, 'conv', 'bn')
        return self

    def to_mixed_precision(self, dtype=torch.float16):
        """The network in `dtype` except the FP32 islands of the FP16 ONNX
        (onnx_export.fp32_islands): normalisation and the heads' last 1x1 convs + sigmoid.

        Module by module, never model.half() then back: a round trip through FP16 would change
        mean 123.675 to 123.6875 and the kept weights to FP16 values.
        """
        kept = set(self.bbox_head.last_convs())
        for module in (self.backbone, self.neck, self.bbox_head):
            for child in module.modules():
                if child not in kept and not list(child.children()):
                    child.to(dtype)
        return self

    def forward_normalized(self, x):
        """The network proper, on a normalised NCHW float batch (cast to the weights' dtype)."""
        x = _as_dtype(x, self.backbone.conv1.weight.dtype)
        return self.bbox_head(self.neck(self.backbone(x)))


class CenterNetWithDecode(nn.Module):
    """(canvas, borders) -> (boxes (B, topk, 4), scores (B, topk), labels (B, topk)): the network
    and decode.decode_heads in one module, for an end-to-end ONNX (export.py --end2end)."""

    def __init__(self, detector: CenterNet):
        super().__init__()
        self.detector = detector
        self.spec = detector.spec

    def forward(self, canvas, borders):
        from .decode import decode_heads
        spec = self.spec
        return decode_heads(*self.detector(canvas), borders, stride=spec.stride, topk=spec.topk,
                            kernel=spec.local_maximum_kernel, candidates_per_peak=0)


def build_model(spec: CenterNetSpec) -> CenterNet:
    """The model in eval mode with untrained weights (checkpoint.load_model loads real ones)."""
    return CenterNet(spec).eval()
