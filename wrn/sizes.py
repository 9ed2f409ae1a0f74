"""Parameter and forward-FLOP counts of the networks of `wrn.models`, from their shapes alone.

A dry run sizes every network of a spec before anything trains. Building the networks to count them,
even on PyTorch's meta device, costs torch's import and a second or more per network, so a dry run of
a large spec took most of a minute; here the counts follow the construction in wrn/models.py layer by
layer in plain arithmetic, and tests/wrn/test_sizes.py checks them equal to `wrn.models.count_params`
and `wrn.models.forward_flops` of the built networks for every network of every shipped spec. A new
architecture gets its count here next to its construction in `wrn.models.build_model`.

What is counted is what the built network gives: parameters as `count_params` (conv weights, BN
gamma/beta, fc weight/bias); FLOPs as torch.utils.flop_counter counts one image's forward pass
(2 per multiply-accumulate of every conv and of the fc's matrix product; BN, ReLU, pooling and the
fc's bias are free).
"""

from __future__ import annotations

from wrn.config import RunConfig

CONV1_WIDTH = 16  # wrn.models.CONV1_WIDTH
GROUP_WIDTHS = (16, 32, 64)  # wrn.models.GROUP_WIDTHS, times k
GROUP_STRIDES = (1, 2, 2)  # wrn.models.GROUP_STRIDES
BOTTLENECK_WIDTHS = (64, 128, 256)  # wrn.models.BOTTLENECK_WIDTHS
# torchvision's wide_resnet50_2 (torchvision/models/resnet.py): Bottleneck layers [3, 4, 6, 3] of
# planes 64..512, inner width 2 x planes (width_per_group 128), expansion 4, stride on the 3x3 conv.
IMAGENET_LAYERS = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (planes, blocks, stride)
IMAGENET_WIDTH_FACTOR = 2
IMAGENET_EXPANSION = 4


class _Tally:
    """Running totals over a network's layers, with the side of the feature map they see."""

    def __init__(self, image_size: int):
        self.side = image_size
        self.params = 0
        self.flops = 0

    def conv(self, in_planes: int, out_planes: int, kernel: int, stride: int = 1, padding: int | None = None,
             side: int | None = None) -> int:
        """A bias-free square conv on a map of `side` (default: the current one); moves the current
        side to its output and returns it."""
        padding = kernel // 2 if padding is None else padding
        self.side = ((self.side if side is None else side) + 2 * padding - kernel) // stride + 1
        self.params += in_planes * out_planes * kernel * kernel
        self.flops += 2 * in_planes * out_planes * kernel * kernel * self.side * self.side
        return self.side

    def batch_norm(self, planes: int) -> None:
        self.params += 2 * planes

    def pool(self, kernel: int, stride: int, padding: int) -> None:
        self.side = (self.side + 2 * padding - kernel) // stride + 1

    def linear(self, in_features: int, out_features: int) -> None:
        self.params += in_features * out_features + out_features
        self.flops += 2 * in_features * out_features


def _preact_unit(t: _Tally, in_planes: int, out_planes: int, stride: int, branch: list[tuple[int, int, int, int]]
                 ) -> None:
    """wrn.models._PreActUnit: BN of the input, the branch's convs (in, out, kernel, stride), each
    after the first preceded by a BN, and a 1x1 projection shortcut when the shape changes."""
    side = t.side
    t.batch_norm(in_planes)
    for i, (cin, cout, kernel, conv_stride) in enumerate(branch):
        if i:
            t.batch_norm(cin)
        t.conv(cin, cout, kernel, conv_stride)
    if stride != 1 or in_planes != out_planes:
        t.conv(in_planes, out_planes, 1, stride, side=side)


def _cifar_network(t: _Tally, units: list[tuple[int, int, int, list]], width: int, num_classes: int) -> None:
    """wrn.models._CifarResNet: conv1, the units, then BN, global pooling and the fc."""
    t.conv(3, CONV1_WIDTH, 3)
    for in_planes, out_planes, stride, branch in units:
        _preact_unit(t, in_planes, out_planes, stride, branch)
    t.batch_norm(width)
    t.linear(width, num_classes)


def _wide_resnet(t: _Tally, cfg: RunConfig) -> None:
    """wrn.models.WideResNet: B(M) blocks, the stride on the first conv."""
    units, in_planes = [], CONV1_WIDTH
    for width, stride in zip(GROUP_WIDTHS, GROUP_STRIDES):
        planes = width * cfg.k
        for i in range(cfg.blocks_per_group):
            cin, unit_stride = (in_planes, stride) if i == 0 else (planes, 1)
            branch = [(cin if j == 0 else planes, planes, size, unit_stride if j == 0 else 1)
                      for j, size in enumerate(cfg.kernel_sizes)]
            units.append((cin, planes, unit_stride, branch))
        in_planes = planes
    _cifar_network(t, units, in_planes, cfg.num_classes)


def _preact_bottleneck_resnet(t: _Tally, cfg: RunConfig) -> None:
    """wrn.models.PreActBottleneckResNet: 1x1(out/4, stride) - 3x3(out/4) - 1x1(out) units."""
    units, in_planes = [], CONV1_WIDTH
    for out_planes, stride in zip(BOTTLENECK_WIDTHS, GROUP_STRIDES):
        inner = out_planes // 4
        for i in range(cfg.blocks_per_group):
            cin, unit_stride = (in_planes, stride) if i == 0 else (out_planes, 1)
            units.append((cin, out_planes, unit_stride,
                          [(cin, inner, 1, unit_stride), (inner, inner, 3, 1), (inner, out_planes, 1, 1)]))
        in_planes = out_planes
    _cifar_network(t, units, in_planes, cfg.num_classes)


def _wide_resnet50_2(t: _Tally, cfg: RunConfig) -> None:
    """torchvision's wide_resnet50_2: a 7x7/2 stem conv, BN, 3x3/2 max pool, post-activation
    bottlenecks whose downsampling shortcut is a 1x1 conv and a BN, then pooling and the fc."""
    t.conv(3, 64, 7, 2, padding=3)
    t.batch_norm(64)
    t.pool(3, 2, 1)
    in_planes = 64
    for planes, blocks, stride in IMAGENET_LAYERS:
        width, out_planes = planes * IMAGENET_WIDTH_FACTOR, planes * IMAGENET_EXPANSION
        for i in range(blocks):
            block_stride = stride if i == 0 else 1
            side = t.side
            for cin, cout, kernel, conv_stride in ((in_planes, width, 1, 1), (width, width, 3, block_stride),
                                                   (width, out_planes, 1, 1)):
                t.conv(cin, cout, kernel, conv_stride)
                t.batch_norm(cout)
            if i == 0:
                t.conv(in_planes, out_planes, 1, block_stride, side=side)
                t.batch_norm(out_planes)
            in_planes = out_planes
    t.linear(in_planes, cfg.num_classes)


_COUNTERS = {"wrn": _wide_resnet, "preact_resnet": _preact_bottleneck_resnet, "wrn50_2_bottleneck": _wide_resnet50_2}


def network_size(cfg: RunConfig) -> tuple[int, int]:
    """(parameters, forward FLOPs of one image of `cfg.image_size`) of a resolved config's network."""
    tally = _Tally(cfg.image_size)
    _COUNTERS[cfg.arch](tally, cfg)
    return tally.params, tally.flops
