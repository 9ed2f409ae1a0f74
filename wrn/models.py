"""The networks of the paper: wide residual networks with any B(M) block, the thin pre-activation
bottleneck ResNets they are compared with (Table 5), and the ImageNet WRN-50-2-bottleneck (Tables 8-9).

Topology and initialisation follow the official Lua code (docs/paper.md, "Architecture"): models/wide-resnet.lua
for WRNs, models/resnet-pre-act.lua (a copy of KaimingHe/resnet-1k-layers) for the thin baselines, both
followed by models/utils.lua's DisableBias, MSRinit and FCinit. `build_model(cfg)` is the one entry
point; `count_params` and `forward_flops` give the numbers every result records.
"""

from __future__ import annotations

import math

import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from wrn.config import RunConfig

CONV1_WIDTH = 16  # "The size of conv1 is fixed in all of our experiments" (Table 1)
GROUP_WIDTHS = (16, 32, 64)  # times k for groups conv2, conv3, conv4 (Table 1)
GROUP_STRIDES = (1, 2, 2)  # "downsampling performed by the first layers in groups conv3 and conv4"
BOTTLENECK_WIDTHS = (64, 128, 256)  # resnet-1k-layers nStages {16, 64, 128, 256}, inner width out/4


def _conv(in_planes: int, out_planes: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free conv keeping the spatial size (padding k//2), as utils.DisableBias leaves them."""
    return nn.Conv2d(in_planes, out_planes, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)


def _bn_relu(planes: int) -> list[nn.Module]:
    """The pre-activation that precedes every conv (paper §2, "Batch normalization and ReLU precede each
    convolution")."""
    return [nn.BatchNorm2d(planes), nn.ReLU(inplace=True)]


class _PreActUnit(nn.Module):
    """A pre-activation residual unit: BN-ReLU of the input feeds the residual branch and, when the
    shape changes, the shortcut, a bias-free 1x1 conv with the unit's stride and no BN (official
    Lua/PyTorch code; docs/paper.md, "Architecture"); otherwise the shortcut adds the raw input."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, branch: list[nn.Module]):
        super().__init__()
        self.preact = nn.Sequential(*_bn_relu(in_planes))
        self.branch = nn.Sequential(*branch)
        self.shortcut = _conv(in_planes, out_planes, 1, stride) if stride != 1 or in_planes != out_planes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.preact(x)
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        return self.branch(activated) + shortcut


class PreActBlock(_PreActUnit):
    """The residual block B(M) of the paper (§2.1), built from its kernel sizes M.

    Every conv is preceded by BN-ReLU and has the group's width (no bottleneck). The stride sits on the
    first conv, as in the official repository's generic block of its first commit (8606dab; the paper
    does not say); dropout (when p > 0) sits between the BN-ReLU and every conv but the first, as in
    the official wide_basic."""

    def __init__(self, in_planes: int, planes: int, kernel_sizes: tuple[int, ...], stride: int,
                 dropout: float):
        layers: list[nn.Module] = [_conv(in_planes, planes, kernel_sizes[0], stride)]
        for size in kernel_sizes[1:]:
            layers += [*_bn_relu(planes), *([nn.Dropout(dropout)] if dropout > 0 else []), _conv(planes, planes, size)]
        super().__init__(in_planes, planes, stride, layers)


class PreActBottleneck(_PreActUnit):
    """The pre-activation bottleneck unit of He et al., *Identity Mappings* (KaimingHe/resnet-1k-layers).

    BN-ReLU-1x1(out/4, stride)-BN-ReLU-3x3(out/4)-BN-ReLU-1x1(out); the stride is on the first 1x1 conv
    as in that code."""

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        inner = out_planes // 4
        super().__init__(in_planes, out_planes, stride, [
            _conv(in_planes, inner, 1, stride),
            *_bn_relu(inner), _conv(inner, inner, 3),
            *_bn_relu(inner), _conv(inner, out_planes, 1),
        ])


class _CifarResNet(nn.Module):
    """conv1 (3->16, 3x3), three groups of residual blocks, then BN-ReLU, global average pool and a
    linear classifier (Table 1; the official code pools 8x8, which is global for 32x32 inputs).

    The groups are named conv2, conv3, conv4 after Table 1."""

    def __init__(self, conv2: nn.Sequential, conv3: nn.Sequential, conv4: nn.Sequential, width: int,
                 num_classes: int):
        super().__init__()
        self.conv1 = _conv(3, CONV1_WIDTH, 3)
        self.conv2, self.conv3, self.conv4 = conv2, conv3, conv4
        self.head = nn.Sequential(*_bn_relu(width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv4(self.conv3(self.conv2(self.conv1(x))))
        return self.fc(self.head(x))


class WideResNet(_CifarResNet):
    """WRN-d-k-B(M): groups of `blocks_per_group` B(M) blocks with widths 16k, 32k, 64k.

    The depth convention that turns d into `blocks_per_group` lives in `wrn.names.blocks_per_group`."""

    def __init__(self, blocks_per_group: int, k: int, kernel_sizes: tuple[int, ...], num_classes: int,
                 dropout: float = 0.0):
        in_planes, groups = CONV1_WIDTH, []
        for width, stride in zip(GROUP_WIDTHS, GROUP_STRIDES):
            planes = width * k
            blocks = [PreActBlock(in_planes if i == 0 else planes, planes, kernel_sizes,
                                  stride if i == 0 else 1, dropout) for i in range(blocks_per_group)]
            groups.append(nn.Sequential(*blocks))
            in_planes = planes
        super().__init__(*groups, width=in_planes, num_classes=num_classes)


class PreActBottleneckResNet(_CifarResNet):
    """The thin pre-activation ResNet-(9n+2) of Table 5 (ResNet-164: n=18, ResNet-1001: n=111).

    Construction of models/resnet-pre-act.lua (= KaimingHe/resnet-1k-layers): conv1 3->16 with no BN
    after it, three groups of n bottleneck units with output widths 64/128/256, projection shortcut only
    in the first unit of each group, head BN-ReLU-avgpool-fc, no conv biases. It gives exactly the
    official log's 1,703,258 parameters for ResNet-164 on CIFAR-10 (10,327,706 for ResNet-1001); a BN
    after conv1 would add 32, conv biases 12,560."""

    def __init__(self, units_per_group: int, num_classes: int):
        in_planes, groups = CONV1_WIDTH, []
        for out_planes, stride in zip(BOTTLENECK_WIDTHS, GROUP_STRIDES):
            units = [PreActBottleneck(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
                     for i in range(units_per_group)]
            groups.append(nn.Sequential(*units))
            in_planes = out_planes
        super().__init__(*groups, width=in_planes, num_classes=num_classes)


def init_official(model: nn.Module, conv_init: str = "fan_in", bn_init: str = "uniform") -> None:
    """Initialise as the official Lua code (models/utils.lua, torch/nn defaults; docs/paper.md, "Recipe").

    Convs: N(0, sqrt(2 / (kh*kw*fan))) with fan = input planes ("fan_in", MSRinit since commit ea02518,
    2016-09-08, the default) or output planes ("fan_out", the earlier code behind the v1/ZCA-era runs
    and the shipped logs). BN: weight ~ U(0,1) ("uniform", old Torch nn's default, kept by the official
    code, the default) or 1 ("ones", modern frameworks), bias 0, eps 1e-5, momentum 0.1. Linear: weight
    keeps the default U(+-1/sqrt(fan_in)), bias 0 (FCinit)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            out_planes, in_planes, kh, kw = module.weight.shape
            fan = in_planes if conv_init == "fan_in" else out_planes
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / (kh * kw * fan)))
        elif isinstance(module, nn.BatchNorm2d):
            if bn_init == "uniform":
                nn.init.uniform_(module.weight, 0.0, 1.0)
            else:
                nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)


def build_model(cfg: RunConfig) -> nn.Module:
    """The network of a resolved config, initialised by `init_official` with cfg.conv_init/bn_init.

    wrn50_2_bottleneck is torchvision's wide_resnet50_2, the same post-activation network as the
    official pretrained model (pretrained/README.md of the official repository); fb.resnet.torch, which trained it, initialises like
    conv_init="fan_out", bn_init="ones" with a zero fc bias."""
    if cfg.arch == "wrn":
        model: nn.Module = WideResNet(cfg.blocks_per_group, cfg.k, cfg.kernel_sizes, cfg.num_classes, cfg.dropout)
    elif cfg.arch == "preact_resnet":
        model = PreActBottleneckResNet(cfg.blocks_per_group, cfg.num_classes)
    else:
        model = torchvision.models.wide_resnet50_2(weights=None, num_classes=cfg.num_classes)
    init_official(model, cfg.conv_init, cfg.bn_init)
    return model


def count_params(model: nn.Module) -> int:
    """Parameters as the paper and the official logs count them: conv weights, BN gamma/beta and the
    fc weight/bias (BN running statistics are buffers, not parameters)."""
    return sum(p.numel() for p in model.parameters())


def forward_flops(cfg: RunConfig) -> int:
    """Forward FLOPs for one image of the dataset's size (2 FLOPs per multiply-accumulate; convs and the
    fc, which is what FlopCounterMode counts). Built on the meta device, so it costs no memory or time
    even for the biggest nets and gives the same count as a real forward."""
    with torch.device("meta"):
        model = build_model(cfg).eval()
        image = torch.empty(1, 3, cfg.image_size, cfg.image_size)
    with FlopCounterMode(display=False) as counter:
        model(image)
    return counter.get_total_flops()
