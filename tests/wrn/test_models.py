"""Every network of the paper: exact parameter counts, forward/backward, block topology, init, FLOPs.

Parameter counts are the official-code counts of docs/paper.md, "Parameter counts" (they reproduce
the paper's rounded counts and the official logs); the thin baselines are the official log's
ResNet-164 count and the same construction at depth 1001; WRN-50-2 is torchvision's.
"""

import math
from typing import NamedTuple

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from experiments.plan import expand
from experiments.spec import list_specs
from wrn.config import RunConfig, resolve
from wrn.models import (PreActBlock, PreActBottleneck, PreActBottleneckResNet, WideResNet, build_model,
                        count_params, forward_flops, init_official)
from wrn.names import parse_label, render_label
from wrn.recipes import RECIPE_NAMES, RECIPE_PRESETS


class Net(NamedTuple):
    label: str
    dataset: str
    params: int


def _both(label: str, c10: int, c100: int) -> list[Net]:
    return [Net(label, "cifar10", c10), Net(label, "cifar100", c100)]


PAPER_NETWORKS: list[Net] = [
    # Table 2: block types, k=2, nominal depth N=(d-4)/6, CIFAR-10 only.
    Net("WRN-40-2-B(1,3,1)", "cifar10", 1_429_082),
    Net("WRN-40-2-B(3,1)", "cifar10", 1_211_354),
    Net("WRN-40-2-B(1,3)", "cifar10", 1_297_370),
    Net("WRN-40-2-B(3,1,1)", "cifar10", 1_343_066),
    Net("WRN-28-2", "cifar10", 1_467_610),
    Net("WRN-22-2-B(3,1,3)", "cifar10", 1_145_498),
    # Table 3: l = 1..4 convs per block at WRN-40-2 with the true conv count, CIFAR-10 only.
    Net("WRN-40-2-B(3)-true", "cifar10", 2_243_546),
    Net("WRN-40-2-B(3,3)-true", "cifar10", 2_243_546),
    Net("WRN-40-2-B(3,3,3)-true", "cifar10", 2_243_546),
    Net("WRN-40-2-B(3,3,3,3)-true", "cifar10", 2_243_546),
    # Table 4 (and Table 5's WRN-40-4, 16-8, 28-10); WRN-40-8 has no CIFAR-100 cell.
    *_both("WRN-40-1", 563_930, 569_780),
    *_both("WRN-40-2", 2_243_546, 2_255_156),
    *_both("WRN-40-4", 8_949_210, 8_972_340),
    Net("WRN-40-8", "cifar10", 35_748_314),
    *_both("WRN-28-10", 36_479_194, 36_536_884),
    *_both("WRN-28-12", 52_517_850, 52_587_060),
    *_both("WRN-22-8", 17_158_106, 17_204_276),
    *_both("WRN-22-10", 26_797_914, 26_855_604),
    *_both("WRN-16-8", 10_961_370, 11_007_540),
    *_both("WRN-16-10", 17_116_634, 17_174_324),
    # Table 5 thin baselines (CIFAR-100 = CIFAR-10 + 90 more outputs of the 256-wide fc).
    *_both("preact-ResNet-164", 1_703_258, 1_726_388),
    *_both("preact-ResNet-1001", 10_327_706, 10_350_836),
    # Table 6: dropout in the block, CIFAR and SVHN (SVHN has 10 classes).
    *_both("WRN-16-4", 2_748_890, 2_772_020),
    *_both("WRN-16-4-dropout", 2_748_890, 2_772_020),
    Net("WRN-16-4", "svhn", 2_748_890),
    Net("WRN-16-4-dropout", "svhn", 2_748_890),
    *_both("WRN-28-10-dropout", 36_479_194, 36_536_884),
    *_both("WRN-52-1", 758_362, 764_212),
    *_both("WRN-52-1-dropout", 758_362, 764_212),
    Net("WRN-52-1", "svhn", 758_362),
    Net("WRN-52-1-dropout", "svhn", 758_362),
    # Table 9 and its text: best single runs; WRN-16-8 on SVHN with and without dropout.
    *_both("WRN-40-10-dropout", 55_841_754, 55_899_444),
    Net("WRN-16-8-dropout", "svhn", 10_961_370),
    Net("WRN-16-8", "svhn", 10_961_370),
    # Tables 8-9: ImageNet.
    Net("WRN-50-2-bottleneck", "imagenet", 68_883_240),
]


def _ids(nets: list[Net]) -> list[str]:
    return [f"{net.label}@{net.dataset}" for net in nets]


IDS = _ids(PAPER_NETWORKS)
# Forward/backward on CPU once per network (first dataset listed) up to 12M parameters, plus WRN-50-2:
# that covers every block type, both depth conventions, dropout and every arch; the bigger CIFAR WRNs
# only repeat the B(3,3) path at a greater width (they are still built and counted).
_FIRST_PER_LABEL: dict[str, Net] = {}
for _net in PAPER_NETWORKS:
    _FIRST_PER_LABEL.setdefault(_net.label, _net)
CHEAP_NETWORKS = [net for net in _FIRST_PER_LABEL.values() if net.params <= 12_000_000 or net.dataset == "imagenet"]
CIFAR_NETWORKS = [net for net in PAPER_NETWORKS if net.dataset != "imagenet"]


def resolved(label: str, dataset: str, **overrides) -> RunConfig:
    return resolve(RunConfig(dataset=dataset, **parse_label(label), **overrides))


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def test_the_paper_network_list_has_no_duplicates():
    assert len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("net", PAPER_NETWORKS, ids=IDS)
def test_parameter_count_is_exact(net):
    assert count_params(build_model(resolved(net.label, net.dataset))) == net.params


@pytest.mark.parametrize("net", PAPER_NETWORKS, ids=IDS)
def test_label_renders_back(net):
    assert render_label(resolved(net.label, net.dataset)) == net.label


@pytest.mark.parametrize("net", CHEAP_NETWORKS, ids=_ids(CHEAP_NETWORKS))
def test_forward_backward(net):
    cfg = resolved(net.label, net.dataset)
    model = build_model(cfg).train()
    size = 64 if cfg.dataset == "imagenet" else 32  # torchvision pools adaptively; 64 keeps it cheap
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, cfg.num_classes)
    out.logsumexp(dim=1).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def _blocks(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, (PreActBlock, PreActBottleneck))]


@pytest.mark.parametrize("net", CIFAR_NETWORKS, ids=_ids(CIFAR_NETWORKS))
def test_projection_only_where_channels_change_and_stride_only_at_conv3_conv4(net):
    with torch.device("meta"):  # topology only: skip allocating and initialising the weights
        model = build_model(resolved(net.label, net.dataset))
    for name, block in model.named_modules():
        if isinstance(block, (PreActBlock, PreActBottleneck)):
            first_conv, last_conv = block.branch[0], block.branch[-1]
            changes = first_conv.in_channels != last_conv.out_channels
            assert (block.shortcut is not None) == changes, name
    strided = {name for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)}
    assert strided == {"conv3.0.branch.0", "conv3.0.shortcut", "conv4.0.branch.0", "conv4.0.shortcut"}
    assert all(m.stride == (2, 2) for name, m in model.named_modules() if name in strided)


@pytest.mark.parametrize("block", [PreActBlock(16, 32, (3, 1), stride=2, dropout=0.0), PreActBlock(32, 32, (3, 1), 1, 0.0),
                                   PreActBottleneck(64, 128, stride=2), PreActBottleneck(128, 128, stride=1)])
def test_projection_takes_the_activated_input_identity_the_raw_one(block):
    block.eval()
    x = torch.randn(2, block.preact[0].num_features, 8, 8)
    activated = block.preact(x)
    shortcut = x if block.shortcut is None else block.shortcut(activated)
    assert torch.equal(block(x), block.branch(activated) + shortcut)
    assert (block.shortcut is None) == (block.branch[0].in_channels == block.branch[-1].out_channels)


def test_thin_wrn_has_no_projection_in_its_first_group():
    model = build_model(resolved("WRN-40-1", "cifar10"))
    assert [name for name, m in model.named_modules() if isinstance(m, PreActBlock) and m.shortcut is not None] \
        == ["conv3.0", "conv4.0"]
    wide = build_model(resolved("WRN-40-2", "cifar10"))
    assert [name for name, m in wide.named_modules() if isinstance(m, PreActBlock) and m.shortcut is not None] \
        == ["conv2.0", "conv3.0", "conv4.0"]


@pytest.mark.parametrize("label, blocks, kernels", [
    ("WRN-40-2-B(1,3,1)", 6, (1, 3, 1)),  # nominal: 6 blocks of 3 convs per group, whatever l
    ("WRN-40-2-B(3,1)", 6, (3, 1)),
    ("WRN-40-2-B(1,3)", 6, (1, 3)),
    ("WRN-40-2-B(3,1,1)", 6, (3, 1, 1)),
    ("WRN-28-2", 4, (3, 3)),
    ("WRN-22-2-B(3,1,3)", 3, (3, 1, 3)),
    ("WRN-40-2-B(3)-true", 12, (3,)),  # true: 36 convs in blocks of l -> 12, 6, 4, 3
    ("WRN-40-2-B(3,3)-true", 6, (3, 3)),
    ("WRN-40-2-B(3,3,3)-true", 4, (3, 3, 3)),
    ("WRN-40-2-B(3,3,3,3)-true", 3, (3, 3, 3, 3)),
])
def test_block_structure(label, blocks, kernels):
    cfg = resolved(label, "cifar10")
    model = build_model(cfg)
    assert isinstance(model, WideResNet)
    for group, width in ((model.conv2, 32), (model.conv3, 64), (model.conv4, 128)):
        assert len(group) == blocks
        for block in group:
            convs = [m for m in block.branch if isinstance(m, nn.Conv2d)]
            assert tuple(c.kernel_size[0] for c in convs) == kernels
            assert all(c.padding == (c.kernel_size[0] // 2,) * 2 and c.bias is None for c in convs)
            assert all(c.out_channels == width for c in convs)  # no bottleneck: the group's width
            # every conv but the first is preceded by BN-ReLU (the first by the shared pre-activation)
            for i, layer in enumerate(block.branch):
                if isinstance(layer, nn.Conv2d) and i > 0:
                    assert isinstance(block.branch[i - 1], nn.ReLU) and isinstance(block.branch[i - 2], nn.BatchNorm2d)
            assert [type(m) for m in block.preact] == [nn.BatchNorm2d, nn.ReLU]


def test_first_conv_and_head_are_fixed():
    model = build_model(resolved("WRN-28-10", "cifar100"))
    assert (model.conv1.in_channels, model.conv1.out_channels, model.conv1.kernel_size) == (3, 16, (3, 3))
    assert model.conv2[0].branch[0].in_channels == 16
    assert model.head[0].num_features == 640 and (model.fc.in_features, model.fc.out_features) == (640, 100)


@pytest.mark.parametrize("label, dataset, rate", [
    ("WRN-16-4-dropout", "cifar10", 0.3),
    ("WRN-16-4-dropout", "svhn", 0.4),
    ("WRN-52-1-dropout", "cifar100", 0.3),
])
def test_dropout_sits_before_every_non_first_conv_and_acts_only_in_training(label, dataset, rate):
    model = build_model(resolved(label, dataset))
    for block in _blocks(model):
        layers = list(block.branch)
        drops = [i for i, m in enumerate(layers) if isinstance(m, nn.Dropout)]
        assert len(drops) == len([m for m in layers if isinstance(m, nn.Conv2d)]) - 1
        for i in drops:
            assert layers[i].p == rate
            assert isinstance(layers[i - 1], nn.ReLU) and isinstance(layers[i + 1], nn.Conv2d)
    x = torch.randn(2, 3, 32, 32)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_no_dropout_modules_without_dropout():
    model = build_model(resolved("WRN-16-4", "cifar10")).train()
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), model(x))


def test_bottleneck_resnet_structure():
    model = build_model(resolved("preact-ResNet-164", "cifar10"))
    assert isinstance(model, PreActBottleneckResNet)
    assert [len(g) for g in (model.conv2, model.conv3, model.conv4)] == [18, 18, 18]
    unit = model.conv3[0]
    convs = [m for m in unit.branch if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (64, 32, 1, 2), (32, 32, 3, 1), (32, 128, 1, 1)]
    # conv1 feeds the first unit directly (no BN of its own: +32 params would miss the official count)
    assert [name for name, _ in model.named_children()] == ["conv1", "conv2", "conv3", "conv4", "head", "fc"]
    n_convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert n_convs == 1 + 3 * 18 * 3 + 3  # 164 weighted layers = conv1 + 162 + fc, plus 3 projections


def test_wrn50_2_is_torchvisions_wide_resnet50_2():
    import torchvision

    model = build_model(resolved("WRN-50-2-bottleneck", "imagenet"))
    assert isinstance(model, torchvision.models.ResNet)
    assert model.layer1[0].conv2.out_channels == 128 and model.layer1[0].conv3.out_channels == 256


# ---- initialisation -------------------------------------------------------------------------------

def _big_conv(model: nn.Module) -> nn.Conv2d:
    return max((m for m in model.modules() if isinstance(m, nn.Conv2d)), key=lambda m: m.weight.numel())


@pytest.mark.parametrize("conv_init", ["fan_in", "fan_out"])
@pytest.mark.parametrize("bn_init", ["uniform", "ones"])
def test_init_follows_the_official_code(conv_init, bn_init):
    model = build_model(resolved("WRN-16-4", "cifar10", conv_init=conv_init, bn_init=bn_init))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            out_planes, in_planes, kh, kw = m.weight.shape
            fan = in_planes if conv_init == "fan_in" else out_planes
            expected = math.sqrt(2 / (kh * kw * fan))
            if m.weight.numel() > 20_000:  # enough samples for a 5% check of the std
                assert m.weight.std().item() == pytest.approx(expected, rel=0.05)
            assert m.bias is None
        elif isinstance(m, nn.BatchNorm2d):
            assert (m.eps, m.momentum) == (1e-5, 0.1)
            assert torch.all(m.bias == 0)
            if bn_init == "ones":
                assert torch.all(m.weight == 1)
            else:
                assert 0 <= m.weight.min() and m.weight.max() < 1 and m.weight.std() > 0.1
    assert torch.all(model.fc.bias == 0)
    bound = 1 / math.sqrt(model.fc.in_features)
    assert model.fc.weight.abs().max() <= bound and model.fc.weight.std() > bound / 3


@pytest.mark.parametrize("recipe", RECIPE_NAMES)
def test_each_recipe_initialises_as_its_code(recipe):
    """The preset's init reaches the network: He normal by its fan (a widening conv's std within 5 %)
    and its BN scale (docs/recipes.md, "The presets")."""
    label, dataset = ("WRN-50-2-bottleneck", "imagenet") if recipe == "fb-resnet-torch" else ("WRN-16-4", "cifar10")
    cfg = resolved(label, dataset, recipe=recipe)
    model = build_model(cfg)
    # the largest conv whose fans differ (a change of width), where fan_in and fan_out part
    conv = max((m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels != m.out_channels),
               key=lambda m: m.weight.numel())
    out_planes, in_planes, kh, kw = conv.weight.shape
    fan = in_planes if RECIPE_PRESETS[recipe]["conv_init"] == "fan_in" else out_planes
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (kh * kw * fan)), rel=0.05)
    gammas = torch.cat([m.weight.detach() for m in model.modules() if isinstance(m, nn.BatchNorm2d)])
    if RECIPE_PRESETS[recipe]["bn_init"] == "ones":
        assert torch.all(gammas == 1)
    else:
        assert 0 <= gammas.min() and gammas.max() < 1 and abs(gammas.mean().item() - 0.5) < 0.05


def test_fan_in_and_fan_out_differ_where_planes_change():
    conv = nn.Conv2d(16, 64, 3, bias=False)
    init_official(conv, conv_init="fan_out")
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 64)), rel=0.05)
    init_official(conv, conv_init="fan_in")
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 16)), rel=0.05)


# ---- FLOPs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("label, gmac", [
    # multiply-accumulates counted by hand over the official topology (convs + fc)
    ("WRN-28-10", 5.243), ("WRN-16-8", 1.548), ("WRN-22-8", 2.454), ("WRN-40-4", 1.299),
    ("WRN-16-4", 0.393), ("WRN-40-2", 0.328),
])
def test_forward_flops_match_the_hand_count(label, gmac):
    assert forward_flops(resolved(label, "cifar10")) == pytest.approx(2 * gmac * 1e9, rel=0.01)


@pytest.mark.parametrize("label, dataset", [("WRN-40-2-B(1,3,1)", "cifar10"), ("preact-ResNet-164", "cifar100")])
def test_meta_device_flops_equal_a_real_cpu_forward(label, dataset):
    cfg = resolved(label, dataset)
    model = build_model(cfg).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 32, 32))
    assert forward_flops(cfg) == counter.get_total_flops()


def test_table3_networks_cost_the_same():
    # Table 3 holds the number and placement of 3x3 convs fixed (12 per group), so FLOPs are equal too
    flops = {forward_flops(resolved(f"WRN-40-2-B({','.join(['3'] * l)})-true", "cifar10")) for l in (1, 2, 3, 4)}
    assert len(flops) == 1


def test_every_network_a_shipped_spec_trains_is_covered_here():
    """The parametrizations above run over PAPER_NETWORKS; no shipped spec may use a network outside it."""
    covered = {(net.label, net.dataset) for net in PAPER_NETWORKS}
    used = {(run.label, run.config.dataset) for spec in list_specs() for run in expand(spec, "paper")}
    assert used <= covered, sorted(used - covered)
