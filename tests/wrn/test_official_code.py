"""The suite's B(M) networks, thin pre-activation ResNets and GCN + ZCA compute what the official
code computes, each checked against a transcription of the official source written here (cited as
path@commit with its line numbers, never imported from wrn/):

- B(M) blocks: `WideResNet` with any `block` computes the network of the generic block of the first
  commit of szagoruyko/wide-residual-networks, models/wide-resnet.lua@8606dab (`bottleneck()`,
  L37-73, with `resnet_nobottleneck` and `resnet_pre_act_inner` = 1; the network of L97-114). Both of
  the suite's depth conventions are covered. Outputs, BN running statistics and gradients agree in
  training and evaluation mode, with dropout as well.
- The thin baselines of Table 5: `PreActBottleneckResNet` computes models/resnet-pre-act.lua@0a4c364
  of the same repository (L38-127). Its architecture is that of KaimingHe/resnet-1k-layers'
  resnet-pre-act.lua@fde7ee9 (L34-122). The two differ only by the unset `resnet_nobottleneck` switch
  and a hard-coded 10-class fc. ResNet-164 has that code's parameters, shape for shape (1,703,258).
  The suite has no basic (non-bottleneck) pre-activation ResNet: `arch="preact_resnet"` always builds
  the bottleneck unit. So nothing is checked against the basic block of facebook/fb.resnet.torch's
  models/preresnet.lua@985e569 (L59-82). A WRN-d-1 is not that network either: it projects with a
  1x1 conv where preresnet.lua's CIFAR default (shortcutType 'A', opts.lua@985e569 L79-84) subsamples
  and pads with zeros (L35-41). WRN-d-1 is checked against the WRN code above.
- GCN + ZCA: `global_contrast_normalize`, `fit_zca` (its d x d eigendecomposition when n >= d, its
  n x n Gram-matrix route when n < d), `apply_zca` and `zca_transform` agree with
  lisa-lab/pylearn2's global_contrast_normalize (pylearn2/expr/preprocessing.py@cea0656) and its
  ZCA.fit / ZCA.apply (pylearn2/datasets/preprocessing.py@318410a). The calls are those of
  pylearn2/scripts/datasets/make_cifar10_gcn_whitened.py@e669d6a, which the official README names.

Every comparison is also shown able to fail. Each alternative gives a different function from the
suite's: the reference with the stride on another conv, the first BN-ReLU elsewhere, the bottleneck
stride on the 3x3 conv, or the ZCA's filter bias or covariance entered otherwise.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse
import torch
import torch.nn.functional as F
from torch import nn

from wrn.config import RunConfig, resolve
from wrn.data.preprocess import apply_zca, fit_zca, global_contrast_normalize, zca_transform
from wrn.models import build_model, count_params

BATCH = 4
NUM_CLASSES = 10
BN_ENTRIES = ("weight", "bias", "running_mean", "running_var")
RUNNING = ("running_mean", "running_var")
RESNET_PRE_ACT_INNER = 1  # opt.resnet_pre_act_inner of models/wide-resnet.lua@8606dab L54: one BN-ReLU-conv each


# --------------------------------------------------------------------------------------------------
# A Lua model as the modules its code `add`s, and how torch/nn runs them
#
# ("conv", name, nIn, nOut, (kW, kH, dW, dH, padW, padH))  bias-free SpatialConvolution (the conv bias is
#     removed: wide-resnet.lua@8606dab L121-123 with cudnn >= 4000, utils.DisableBias at 0a4c364)
# ("bn", name, planes)      SpatialBatchNormalization: eps 1e-5, momentum 0.1 (torch/nn
#     BatchNormalization.lua@6f20a83 L50-52), running variance from the unbiased batch variance, as F.batch_norm
# ("relu",)                 ReLU
# ("dropout",)              nn.Dropout(p, nil, true) (opt.dropout_type 'Dropout'): with v1 nil the kept units
#     are scaled by 1/(1-p) in training and nothing happens in evaluation (Dropout.lua@6f20a83 L3-35)
# ("residual", block, convs, shortcut)  block:add(nn.ConcatTable():add(convs):add(shortcut)):add(nn.CAddTable(true)):
#     `block`'s own modules, then convs and shortcut on their output, summed; an empty shortcut is nn.Identity
# ("avg", 8), ("view", planes), ("linear", name, nIn, nOut)  Avg(8, 8, 1, 1), nn.View, nn.Linear


def param_shapes(model: list) -> dict[str, tuple[int, ...]]:
    """Every parameter and BN buffer of a Lua model by name: a conv weight is nOut x nIn x kH x kW, a BN
    has four vectors, a Linear an nOut x nIn weight and a bias."""
    shapes: dict[str, tuple[int, ...]] = {}
    for module in model:
        if module[0] == "residual":
            for part in module[1:]:
                shapes |= param_shapes(part)
        elif module[0] == "conv":
            _, name, n_in, n_out, (kw, kh, *_rest) = module
            shapes[name] = (n_out, n_in, kh, kw)
        elif module[0] == "bn":
            shapes |= {f"{module[1]}.{entry}": (module[2],) for entry in BN_ENTRIES}
        elif module[0] == "linear":
            _, name, n_in, n_out = module
            shapes |= {f"{name}.weight": (n_out, n_in), f"{name}.bias": (n_out,)}
    return shapes


def run(model: list, x: torch.Tensor, params: dict[str, torch.Tensor], training: bool, dropout: float) -> torch.Tensor:
    """The forward of a Lua nn.Sequential of `model`'s modules in training or evaluation mode."""
    for module in model:
        kind = module[0]
        if kind == "residual":
            _, block, convs, shortcut = module
            activated = run(block, x, params, training, dropout)
            x = run(convs, activated, params, training, dropout) + run(shortcut, activated, params, training, dropout)
        elif kind == "conv":
            _, name, _, _, (_, _, dw, dh, padw, padh) = module
            x = F.conv2d(x, params[name], stride=(dh, dw), padding=(padh, padw))
        elif kind == "bn":
            name = module[1]
            x = F.batch_norm(x, params[f"{name}.running_mean"], params[f"{name}.running_var"],
                             params[f"{name}.weight"], params[f"{name}.bias"], training=training,
                             momentum=0.1, eps=1e-5)
        elif kind == "relu":
            x = F.relu(x)
        elif kind == "dropout":
            x = F.dropout(x, dropout, training=training)
        elif kind == "avg":
            x = F.avg_pool2d(x, module[1], stride=1)
        elif kind == "view":
            x = x.view(-1, module[1])
        else:
            x = F.linear(x, params[f"{module[1]}.weight"], params[f"{module[1]}.bias"])
    return x


def suite_params(model: nn.Module, names: dict[str, str]) -> dict[str, torch.Tensor]:
    """The suite's weights and BN buffers copied under the reference's names; all but the running
    statistics require grad."""
    state = model.state_dict()
    return {ref: state[suite].detach().clone().requires_grad_(not ref.endswith(RUNNING))
            for suite, ref in names.items()}


def bn_names(suite: str, ref: str) -> dict[str, str]:
    return {f"{suite}.{entry}": f"{ref}.{entry}" for entry in BN_ENTRIES}


def images(seed: int = 1) -> torch.Tensor:
    """32x32 inputs, so that Avg(8, 8, 1, 1) of the 8x8 last stage is the suite's global average pool."""
    return torch.randn(BATCH, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def check_mapping(model: nn.Module, names: dict[str, str], reference: list) -> None:
    """`names` is a bijection between the suite's parameters and BN buffers and the reference's, shape for
    shape (`num_batches_tracked` enters no computation while every BN has momentum 0.1)."""
    state = model.state_dict()
    assert sorted(names) == sorted(key for key in state if not key.endswith("num_batches_tracked"))
    shapes = param_shapes(reference)
    assert sorted(names.values()) == sorted(shapes)
    assert {key: tuple(state[key].shape) for key in names} == {key: shapes[ref] for key, ref in names.items()}
    assert {(m.momentum, m.eps) for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {(0.1, 1e-5)}


def check_equivalence(model: nn.Module, names: dict[str, str], reference: list, dropout: float) -> None:
    """Training mode (batch statistics, running statistics updated, the same dropout masks from torch's RNG
    seeded alike), the gradients of a random projection of the outputs, then evaluation mode with the
    statistics that the training forward left."""
    params = suite_params(model, names)
    x = images()
    model.train()
    torch.manual_seed(123)
    suite_out = model(x)
    torch.manual_seed(123)
    ref_out = run(reference, x, params, True, dropout)
    torch.testing.assert_close(suite_out, ref_out, rtol=0, atol=1e-12)
    state = model.state_dict()
    for suite, ref in names.items():
        if ref.endswith(RUNNING):
            torch.testing.assert_close(state[suite], params[ref], rtol=0, atol=1e-12, msg=suite)
    weights = torch.randn(suite_out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    (suite_out * weights).sum().backward()
    (ref_out * weights).sum().backward()
    for key, param in model.named_parameters():
        torch.testing.assert_close(param.grad, params[names[key]].grad, rtol=0, atol=1e-12, msg=key)
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(x), run(reference, x, params, False, dropout), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# B(M): the generic block of models/wide-resnet.lua@8606dab


def conv_params(kernels: tuple[int, ...], stride_at: int = 1) -> list[list[int]]:
    """A block's `conv_params`, one {kW,kH,dW,dH,padW,padH} per kernel size k, padded k//2, as blocks.bottleneck
    writes B(1,3,1) (L75-81: {1,1,-1,-1,0,0},{3,3,1,1,1,1},{1,1,1,1,0,0}): the -1 stride placeholder
    sits on the conv that bottleneck() gives the block's stride. That is the first conv (`stride_at` 1);
    another value is not the official code but a variant."""
    return [[k, k, -1, -1, k // 2, k // 2] if i == stride_at else [k, k, 1, 1, k // 2, k // 2]
            for i, k in enumerate(kernels, 1)]


def lua_bottleneck(params_list: list[list[int]], n_in: int, n_out: int, stride: int, base: str, dropout: float,
                   stride_at: int = 1, first_preact: str = "lua") -> tuple:
    """bottleneck(conv_params, nInputPlane, nOutputPlane, stride) of models/wide-resnet.lua@8606dab L37-73 with
    opt.resnet_nobottleneck (nBottleneckPlane = nOutputPlane, L38-41: the paper's B(M), every conv as wide
    as the group). BN j precedes conv j, j = 1..l (1-based as Lua's ipairs). The first BN-ReLU goes into
    `convs` when nInputPlane == nOutputPlane and into the outer `block` otherwise, where the projection
    shortcut also sees it (L48-49, L64-72).

    The variants are not the official code. `stride_at` gives the block's stride to another conv.
    `first_preact` "branch" puts the first BN-ReLU always in the residual branch (the projection adds a
    1x1 conv of the raw input); "shared" puts it always before the split (the identity adds the
    activated input)."""
    n_bottleneck = n_out  # L38-41, resnet_nobottleneck
    block, convs = [], []
    for i, v in enumerate(params_list, 1):  # L46
        u = list(v)  # L50 (u = v: the same table in Lua, rebuilt here for every block as blocks.bottleneck does)
        if i == stride_at:
            u[2], u[3] = stride, stride  # L51: u[3], u[4] = stride, stride (Lua's 1-based dW, dH)
        if i == 1:
            in_branch = {"lua": n_in == n_out, "branch": True, "shared": False}[first_preact]
            module = convs if in_branch else block  # L48
            module += [("bn", f"{base}.bn1", n_in), ("relu",)]  # L49
            convs.append(("conv", f"{base}.conv1", n_in, n_bottleneck, tuple(u)))  # L52
        else:
            for _ in range(RESNET_PRE_ACT_INNER):  # L54-60
                convs += [("bn", f"{base}.bn{i}", n_bottleneck), ("relu",)]  # L55
                if dropout > 0:  # L56-58
                    convs.append(("dropout",))
                convs.append(("conv", f"{base}.conv{i}", n_bottleneck, n_bottleneck, tuple(u)))  # L59
    projection = ("conv", f"{base}.shortcut", n_in, n_out, (1, 1, stride, stride, 0, 0))
    shortcut = [] if n_in == n_out else [projection]  # L64-66: nn.Identity() or the strided 1x1 conv
    return ("residual", block, convs, shortcut)  # L68-72


def lua_wrn(n: int, k: int, kernels: tuple[int, ...], dropout: float, **variant) -> list:
    """The model of models/wide-resnet.lua@8606dab L97-114: nStages {16, 16k, 32k, 64k} (L103-104), a 3x3
    conv 3->16 (L106), three stages of n blocks with strides 1, 2, 2 (L107-109; layer(), L87-95: the
    stride only in a stage's first block), then BN-ReLU, Avg(8,8,1,1), View and Linear (L110-114). The
    depth assertion and n = (depth-4)/6 of L99-100 are left to the caller, who gives n."""
    stages = (16, 16 * k, 32 * k, 64 * k)
    model: list = [("conv", "stem", 3, stages[0], (3, 3, 1, 1, 1, 1))]
    for s, stride in ((1, 1), (2, 2), (3, 2)):
        for i in range(1, n + 1):
            n_in, block_stride = (stages[s - 1], stride) if i == 1 else (stages[s], 1)
            specs = conv_params(kernels, variant.get("stride_at", 1))
            model.append(lua_bottleneck(specs, n_in, stages[s], block_stride, f"stage{s}.block{i}", dropout, **variant))
    return model + [("bn", "bn", stages[3]), ("relu",), ("avg", 8), ("view", stages[3]),
                    ("linear", "fc", stages[3], NUM_CLASSES)]


def lua_blocks_per_stage(depth: int, kernels: tuple[int, ...], convention: str) -> int:
    """n of the Lua model. Nominal (Table 2) is L99-100's n = (depth-4)/6 whatever the block. True (Table 3,
    not in the Lua code) keeps the blocks' convolutions at depth - 4 = 3 stages x n blocks x l convs, the
    36 of WRN-40-2 for every l."""
    step = 6 if convention == "nominal" else 3 * len(kernels)
    assert (depth - 4) % step == 0
    return (depth - 4) // step


def wrn_names(n: int, kernels: tuple[int, ...], dropout: float, reference: list) -> dict[str, str]:
    """The reference name of each suite state_dict key, written from the suite's layout: conv1; groups
    conv2-conv4 (stages 1-3) of blocks whose `preact` is the first BN-ReLU, whose `branch` is conv 1 then
    BN, ReLU, [Dropout], conv for each further conv, and whose `shortcut` is the projection; head.0 the
    last BN; fc. A block has a `shortcut` exactly where the reference has one."""
    shapes = param_shapes(reference)
    step = 4 if dropout > 0 else 3
    names = {"conv1.weight": "stem", **bn_names("head.0", "bn"), "fc.weight": "fc.weight", "fc.bias": "fc.bias"}
    for s in (1, 2, 3):
        for i in range(1, n + 1):
            suite, base = f"conv{s + 1}.{i - 1}", f"stage{s}.block{i}"
            names |= bn_names(f"{suite}.preact.0", f"{base}.bn1")
            names[f"{suite}.branch.0.weight"] = f"{base}.conv1"
            for j in range(2, len(kernels) + 1):
                at = 1 + (j - 2) * step
                names |= bn_names(f"{suite}.branch.{at}", f"{base}.bn{j}")
                names[f"{suite}.branch.{at + step - 1}.weight"] = f"{base}.conv{j}"
            if f"{base}.shortcut" in shapes:
                names[f"{suite}.shortcut.weight"] = f"{base}.shortcut"
    return names


B_M_NETWORKS = [  # (block, depth, k, depth convention, dropout): n = 2, so identity and projection blocks in
    # stages 2 and 3; k = 1 makes stage 1 all identity blocks (16 -> 16), k = 2 starts it with a projection
    pytest.param("B(1,3,1)", 16, 2, "nominal", 0.0, id="WRN-16-2-B(1,3,1)"),
    pytest.param("B(3,1)", 16, 1, "nominal", 0.0, id="WRN-16-1-B(3,1)"),
    pytest.param("B(1,3)", 16, 1, "nominal", 0.0, id="WRN-16-1-B(1,3)"),
    pytest.param("B(3,1,1)", 16, 1, "nominal", 0.0, id="WRN-16-1-B(3,1,1)"),
    pytest.param("B(3,1,3)", 16, 2, "nominal", 0.3, id="WRN-16-2-B(3,1,3)-dropout"),
    pytest.param("B(3,3)", 16, 1, "nominal", 0.0, id="WRN-16-1-B(3,3)"),
    pytest.param("B(3)", 10, 2, "true", 0.0, id="WRN-10-2-B(3)-true"),
    pytest.param("B(3,3,3)", 22, 1, "true", 0.3, id="WRN-22-1-B(3,3,3)-true-dropout"),
    pytest.param("B(3,3,3,3)", 28, 1, "true", 0.0, id="WRN-28-1-B(3,3,3,3)-true"),
]


def b_m_network(block: str, depth: int, k: int, convention: str, dropout: float, **variant):
    """The suite's float64 network, the reference built from the Lua code, and the name map between them."""
    torch.manual_seed(0)
    cfg = resolve(RunConfig(dataset="cifar10", depth=depth, k=k, block=block, depth_convention=convention,
                            dropout=dropout, preprocessing="meanstd"))
    kernels = cfg.kernel_sizes
    n = lua_blocks_per_stage(depth, kernels, convention)
    model = build_model(cfg).double()
    reference = lua_wrn(n, k, kernels, dropout, **variant)
    return model, reference, wrn_names(n, kernels, dropout, lua_wrn(n, k, kernels, dropout))


@pytest.mark.parametrize("block, depth, k, convention, dropout", B_M_NETWORKS)
def test_every_b_m_parameter_and_buffer_is_one_of_the_lua_models(block, depth, k, convention, dropout):
    """Same blocks per stage (under both conventions), same conv kernels, widths and BN sizes, and a
    projection shortcut exactly where the Lua block has one."""
    model, reference, names = b_m_network(block, depth, k, convention, dropout)
    check_mapping(model, names, reference)


@pytest.mark.parametrize("block, depth, k, convention, dropout", B_M_NETWORKS)
def test_b_m_network_computes_the_lua_generic_block_network(block, depth, k, convention, dropout):
    model, reference, names = b_m_network(block, depth, k, convention, dropout)
    check_equivalence(model, names, reference, dropout)


B_M_VARIANTS = [  # what a suite that departed from the Lua block would compute instead
    pytest.param("B(1,3,1)", {"stride_at": 2}, id="B(1,3,1)-stride-on-the-3x3"),
    pytest.param("B(1,3,1)", {"stride_at": 3}, id="B(1,3,1)-stride-on-the-last-1x1"),
    pytest.param("B(3,3)", {"stride_at": 2}, id="B(3,3)-stride-on-the-second-conv"),
    pytest.param("B(3,1,3)", {"first_preact": "branch"}, id="B(3,1,3)-projection-of-the-raw-input"),
    pytest.param("B(3,1,3)", {"first_preact": "shared"}, id="B(3,1,3)-identity-adds-the-activated-input"),
]


@pytest.mark.parametrize("block, variant", B_M_VARIANTS)
def test_the_b_m_comparison_tells_a_departure_from_the_lua_block(block, variant):
    """The reference with the stride elsewhere or the first BN-ReLU elsewhere computes, from the same
    weights, outputs far (> 1e-3) from the suite's: the comparison above would fail for such a suite."""
    model, reference, names = b_m_network(block, 16, 1, "nominal", 0.0, **variant)
    params = suite_params(model, names)
    with torch.no_grad():
        for mode in (True, False):
            model.train(mode)
            assert (model(images()) - run(reference, images(), params, mode, 0.0)).abs().max() > 1e-3


def test_b_m_dropout_masks_change_the_training_output():
    """Without this, the dropout cases above could pass with masks that never apply."""
    model, reference, names = b_m_network("B(3,1,3)", 16, 2, "nominal", 0.3)
    params = suite_params(model, names)
    with torch.no_grad():
        model.train()
        assert (model(images()) - run(lua_wrn(2, 2, (3, 1, 3), 0.0), images(), params, True, 0.0)).abs().max() > 1e-3


# --------------------------------------------------------------------------------------------------
# The thin pre-activation bottleneck ResNet: models/resnet-pre-act.lua@0a4c364


def lua_preact_unit(n_in: int, n_out: int, stride: int, base: str, stride_on: str = "1x1",
                    projection_input: str = "activated") -> tuple:
    """bottleneck(nInputPlane, nOutputPlane, stride) of models/resnet-pre-act.lua@0a4c364 L38-98 (= resnet-1k-layers'
    resnet-pre-act.lua@fde7ee9 L34-91), nBottleneckPlane = nOutputPlane/4 (L40). An identity unit
    (nInputPlane == nOutputPlane, L45-68) has BN-ReLU-conv1x1(stride)-BN-ReLU-conv3x3-BN-ReLU-conv1x1 as
    its branch and adds the raw input. A unit of increasing dimensions (L69-97) has a common BN-ReLU
    before the split (L71-73), the branch conv1x1(stride)-BN-ReLU-conv3x3-BN-ReLU-conv1x1 (L75-87) and a
    strided 1x1 projection (L89-90): the stride is on the first 1x1 conv.

    The variants are not the official code. `stride_on` "3x3" is fb.resnet.torch's placement.
    `projection_input` "raw" moves the common BN-ReLU into the branch."""
    b = n_out // 4  # L40
    s1, s3 = (stride, 1) if stride_on == "1x1" else (1, stride)
    bn_relu = [("bn", f"{base}.bn1", n_in), ("relu",)]  # L48-49 in `convs`, L72-73 in `block`
    convs = [("conv", f"{base}.conv1", n_in, b, (1, 1, s1, s1, 0, 0)),  # L50 / L77
             ("bn", f"{base}.bn2", b), ("relu",),  # L53-54 / L80-81
             ("conv", f"{base}.conv2", b, b, (3, 3, s3, s3, 1, 1)),  # L55 / L82
             ("bn", f"{base}.bn3", b), ("relu",),  # L58-59 / L85-86
             ("conv", f"{base}.conv3", b, n_out, (1, 1, 1, 1, 0, 0))]  # L60 / L87
    if n_in == n_out:  # L45
        return ("residual", [], bn_relu + convs, [])  # L62-68: shortcut nn.Identity()
    shortcut = [("conv", f"{base}.shortcut", n_in, n_out, (1, 1, stride, stride, 0, 0))]  # L89-90
    if projection_input == "raw":
        return ("residual", [], bn_relu + convs, shortcut)
    return ("residual", bn_relu, convs, shortcut)  # L92-96


def lua_preact_resnet(n: int, **variant) -> list:
    """The model of models/resnet-pre-act.lua@0a4c364 L111-127 (depth 9n+2, L113-114): nStages {16, 64, 128, 256}
    (L117), a 3x3 conv 3->16 with no BN-ReLU of its own (L119), three stages of n units with strides 1, 2,
    2 (L120-122; layer(), L101-109), the first unit of every stage, stage 1's 16 -> 64 included, one of
    increasing dimensions; then BN-ReLU, Avg(8,8,1,1), View and Linear (L123-127)."""
    stages = (16, 64, 128, 256)
    model: list = [("conv", "stem", 3, stages[0], (3, 3, 1, 1, 1, 1))]
    for s, stride in ((1, 1), (2, 2), (3, 2)):
        for i in range(1, n + 1):
            n_in, unit_stride = (stages[s - 1], stride) if i == 1 else (stages[s], 1)
            model.append(lua_preact_unit(n_in, stages[s], unit_stride, f"stage{s}.unit{i}", **variant))
    return model + [("bn", "bn", stages[3]), ("relu",), ("avg", 8), ("view", stages[3]),
                    ("linear", "fc", stages[3], NUM_CLASSES)]


def preact_names(n: int) -> dict[str, str]:
    """The reference name of each suite key: a unit's `preact` is BN 1, its `branch` conv1, BN 2, ReLU, conv2,
    BN 3, ReLU, conv3 (indices 0, 1, 3, 4, 6), its `shortcut` the projection of a stage's first unit."""
    names = {"conv1.weight": "stem", **bn_names("head.0", "bn"), "fc.weight": "fc.weight", "fc.bias": "fc.bias"}
    for s in (1, 2, 3):
        for i in range(1, n + 1):
            suite, base = f"conv{s + 1}.{i - 1}", f"stage{s}.unit{i}"
            names |= bn_names(f"{suite}.preact.0", f"{base}.bn1") | bn_names(f"{suite}.branch.1", f"{base}.bn2")
            names |= bn_names(f"{suite}.branch.4", f"{base}.bn3")
            names |= {f"{suite}.branch.{at}.weight": f"{base}.conv{j}" for j, at in ((1, 0), (2, 3), (3, 6))}
            if i == 1:
                names[f"{suite}.shortcut.weight"] = f"{base}.shortcut"
    return names


def preact_network(depth: int, **variant):
    torch.manual_seed(0)
    cfg = resolve(RunConfig(dataset="cifar10", arch="preact_resnet", depth=depth, k=1, preprocessing="meanstd"))
    n = (depth - 2) // 9  # L113-114
    return build_model(cfg).double(), lua_preact_resnet(n, **variant), preact_names(n)


PREACT_DEPTHS = [pytest.param(11, id="ResNet-11"), pytest.param(20, id="ResNet-20")]  # n = 1 (no identity unit), 2


@pytest.mark.parametrize("depth", PREACT_DEPTHS)
def test_every_preact_parameter_and_buffer_is_one_of_the_lua_models(depth):
    model, reference, names = preact_network(depth)
    check_mapping(model, names, reference)


@pytest.mark.parametrize("depth", PREACT_DEPTHS)
def test_preact_resnet_computes_resnet_pre_act_lua(depth):
    model, reference, names = preact_network(depth)
    check_equivalence(model, names, reference, 0.0)


def test_preact_resnet_164_has_the_lua_models_parameters():
    """ResNet-164 (n = 18) shape for shape, on the meta device (no weights): 1,703,258 parameters,
    the count of the official log, in the reference as in the suite."""
    cfg = resolve(RunConfig(dataset="cifar10", arch="preact_resnet", depth=164, k=1, preprocessing="meanstd"))
    with torch.device("meta"):
        model = build_model(cfg)
    reference = lua_preact_resnet(18)
    check_mapping(model, preact_names(18), reference)
    reference_count = sum(int(np.prod(shape)) for name, shape in param_shapes(reference).items()
                          if not name.endswith(RUNNING))
    assert reference_count == count_params(model) == 1_703_258


@pytest.mark.parametrize("variant", [{"stride_on": "3x3"}, {"projection_input": "raw"}],
                         ids=["stride-on-the-3x3", "projection-of-the-raw-input"])
def test_the_preact_comparison_tells_a_departure_from_the_lua_unit(variant):
    model, reference, names = preact_network(20, **variant)
    params = suite_params(model, names)
    with torch.no_grad():
        for mode in (True, False):
            model.train(mode)
            assert (model(images()) - run(reference, images(), params, mode, 0.0)).abs().max() > 1e-3


# --------------------------------------------------------------------------------------------------
# GCN + ZCA: lisa-lab/pylearn2, in numpy float64
#
# make_cifar10_gcn_whitened.py@e669d6a: CIFAR10(which_set='train', gcn=55.) (L19), then ZCA() fitted on and
# applied to it (L50-51), and the test set, GCN'd the same way, whitened with the same fit (L58-61).
# CIFAR10 casts the uint8 pixels to float32, unscaled (pylearn2/datasets/cifar10.py@5653409 L110), and calls
# global_contrast_normalize(X, scale=gcn) (L141-144). pylearn2 computes in float32 there and in Theano's
# floatX in ZCA; the suite fits in float64, and so does the reference (floatX = float64), so that the two
# can be compared tightly.


def pylearn2_global_contrast_normalize(X, scale=1., subtract_mean=True, use_std=False, sqrt_bias=0.,
                                       min_divisor=1e-8):
    """global_contrast_normalize of pylearn2/expr/preprocessing.py@cea0656: signature L16-17, body L63-94."""
    assert X.ndim == 2, "X.ndim must be 2"
    scale = float(scale)
    assert scale >= min_divisor
    mean = X.mean(axis=1)
    if subtract_mean:
        X = X - mean[:, np.newaxis]  # Makes a copy.
    else:
        X = X.copy()
    if use_std:
        ddof = 1
        if X.shape[1] == 1:
            ddof = 0
        normalizers = np.sqrt(sqrt_bias + X.var(axis=1, ddof=ddof)) / scale
    else:
        normalizers = np.sqrt(sqrt_bias + (X ** 2).sum(axis=1)) / scale
    normalizers[normalizers < min_divisor] = 1.
    X /= normalizers[:, np.newaxis]  # Does not make a copy.
    return X


class Pylearn2ZCA:
    """class ZCA of pylearn2/datasets/preprocessing.py@318410a (L1171), with floatX = float64:
    `_gpu_matrix_dot(a, b)` is dot(a, b) and `_gpu_mdmt(M, d)` is dot(M * d, M.T) (L1285)."""

    def __init__(self, n_components=None, n_drop_components=None, filter_bias=0.1, store_inverse=True):  # L1200-1201
        self.n_components = n_components
        self.n_drop_components = n_drop_components
        self.copy = True
        self.filter_bias = np.float64(filter_bias)  # L1218: numpy.cast[theano.config.floatX](filter_bias)
        self.has_fit_ = False
        self.store_inverse = store_inverse
        self.P_ = None
        self.inv_P_ = None

    def fit(self, X):
        """ZCA.fit, L1407-1464."""
        assert X.dtype in ['float32', 'float64']
        assert not np.isnan(X).any()
        assert len(X.shape) == 2
        if self.copy:
            X = X.copy()
        self.mean_ = np.mean(X, axis=0)  # L1414
        X -= self.mean_
        bias = self.filter_bias * scipy.sparse.identity(X.shape[1], 'float64')  # L1420-1421
        covariance = np.dot(X.T, X) / X.shape[0] + bias  # L1423: divided by N
        covariance = np.asarray(covariance)  # dense + sparse is a numpy matrix
        eigs, eigv = scipy.linalg.eigh(covariance)  # L1428
        assert not np.isnan(eigs).any()
        assert not np.isnan(eigv).any()
        assert eigs.min() > 0
        if self.n_components and self.n_drop_components:
            raise ValueError('Either n_components or n_drop_components should be specified')
        if self.n_components:
            eigs = eigs[-self.n_components:]
            eigv = eigv[:, -self.n_components:]
        if self.n_drop_components:
            eigs = eigs[self.n_drop_components:]
            eigv = eigv[:, self.n_drop_components:]
        sqrt_eigs = np.sqrt(eigs)  # L1450
        self.P_ = np.dot(eigv * (1.0 / sqrt_eigs), eigv.T)  # L1452: _gpu_mdmt(eigv, 1.0 / sqrt_eigs)
        assert not np.isnan(self.P_).any()
        self.has_fit_ = True
        self.inv_P_ = np.dot(eigv * sqrt_eigs, eigv.T) if self.store_inverse else None

    def apply(self, X, can_fit=False):
        """ZCA.apply on a design matrix, L1484-1491 (returning the new design matrix)."""
        assert X.dtype in ['float32', 'float64']
        if not self.has_fit_:
            assert can_fit
            self.fit(X)
        return np.dot(X - self.mean_, self.P_)  # L1490


def other_zca(X, how: str):
    """Not pylearn2: ZCA with the covariance or the filter bias entered otherwise, (mean, P)."""
    mean = X.mean(axis=0)
    xc = X - mean
    n, d = X.shape
    if how == "covariance / (N-1)":
        eigs, eigv = np.linalg.eigh(xc.T @ xc / (n - 1) + 0.1 * np.eye(d))
        return mean, (eigv / np.sqrt(eigs)) @ eigv.T
    if how == "bias after the square root":
        eigs, eigv = np.linalg.eigh(xc.T @ xc / n)
        return mean, (eigv / (np.sqrt(eigs.clip(0)) + 0.1)) @ eigv.T
    assert how == "filter bias 0.01"
    eigs, eigv = np.linalg.eigh(xc.T @ xc / n + 0.01 * np.eye(d))
    return mean, (eigv / np.sqrt(eigs)) @ eigv.T


def uint8_images(n: int, seed: int) -> np.ndarray:
    """n uint8 images of 3x8x8 (d = 192) with correlated pixels (2x2 blocks of 4x4 pixels, plus noise),
    so that the covariance has a spread of eigenvalues around the filter bias; image 0 is flat: zero
    norm after centring, which GCN leaves centred (min_divisor)."""
    rng = np.random.default_rng(seed)
    coarse = np.kron(rng.integers(0, 256, (n, 3, 2, 2)), np.ones((1, 1, 4, 4), dtype=np.int64))
    out = np.clip(coarse + rng.integers(-30, 31, (n, 3, 8, 8)), 0, 255).astype(np.uint8)
    out[0] = 77
    return out


def design(images_u8: np.ndarray) -> np.ndarray:
    """The design matrix: one row per image, C x H x W in the CIFAR python batches' order."""
    return images_u8.reshape(len(images_u8), -1).astype(np.float64)


D = 3 * 8 * 8
ZCA_SIZES = [pytest.param(300, id="n300>=d192-eigh"), pytest.param(50, id="n50<d192-gram")]
ZCA_ATOL = 1e-10  # P has entries up to 1/sqrt(0.1) ~ 3.2, the whitened rows of a few units; float64 agrees to ~1e-12


def pylearn2_whitening(n: int):
    """The train and test design matrices, their GCN and ZCA outputs and the fitted ZCA, the pylearn2 way."""
    train, test = design(uint8_images(n, seed=n)), design(uint8_images(20, seed=n + 1))
    gcn_train = pylearn2_global_contrast_normalize(train.copy(), scale=55.)
    gcn_test = pylearn2_global_contrast_normalize(test.copy(), scale=55.)
    zca = Pylearn2ZCA()
    white_train = zca.apply(gcn_train, can_fit=True)
    return train, test, gcn_train, gcn_test, zca, white_train, zca.apply(gcn_test)


@pytest.mark.parametrize("n", ZCA_SIZES)
def test_gcn_and_zca_equal_pylearn2(n, tmp_path):
    """GCN of every row (the flat one included), the fitted mean and P, and the whitened train and
    held-out test rows, through `fit_zca`'s eigendecomposition (n >= d) or its Gram-matrix route
    (n < d); `zca_transform` from the uint8 images gives the same fit."""
    train, test, gcn_train, gcn_test, zca, white_train, white_test = pylearn2_whitening(n)
    assert (n >= D) == (n == 300)
    suite_gcn_train = global_contrast_normalize(torch.from_numpy(train))
    suite_gcn_test = global_contrast_normalize(torch.from_numpy(test))
    np.testing.assert_allclose(suite_gcn_train.numpy(), gcn_train, rtol=0, atol=1e-12)
    np.testing.assert_allclose(suite_gcn_test.numpy(), gcn_test, rtol=0, atol=1e-12)
    assert np.all(gcn_train[0] == 0) and np.allclose(np.linalg.norm(gcn_train[1:], axis=1), 55.0)
    mean, p = fit_zca(suite_gcn_train)
    np.testing.assert_allclose(mean.numpy(), zca.mean_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(p.numpy(), zca.P_, rtol=0, atol=ZCA_ATOL)
    np.testing.assert_allclose(apply_zca(suite_gcn_train, mean, p).numpy(), white_train, rtol=0, atol=ZCA_ATOL)
    np.testing.assert_allclose(apply_zca(suite_gcn_test, mean, p).numpy(), white_test, rtol=0, atol=ZCA_ATOL)
    cached_mean, cached_p = zca_transform(torch.from_numpy(uint8_images(n, seed=n)), tmp_path, "cpu")
    np.testing.assert_allclose(cached_mean.numpy(), zca.mean_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cached_p.numpy(), zca.P_, rtol=0, atol=ZCA_ATOL)


@pytest.mark.parametrize("n", ZCA_SIZES)
def test_the_zca_comparison_tells_a_departure_from_pylearn2(n):
    """The whitened test rows of ZCA with the covariance divided by N-1, the filter bias added to the
    square roots of the eigenvalues or a bias of 0.01, and those of GCN by the standard deviation or
    without centring, are all far (> 1e3 x the tolerance) from the suite's."""
    train, test, *_ = pylearn2_whitening(n)
    suite_gcn_train = global_contrast_normalize(torch.from_numpy(train))
    mean, p = fit_zca(suite_gcn_train)
    suite_white = apply_zca(global_contrast_normalize(torch.from_numpy(test)), mean, p).numpy()
    gcn_train = pylearn2_global_contrast_normalize(train.copy(), scale=55.)
    gcn_test = pylearn2_global_contrast_normalize(test.copy(), scale=55.)
    for how in ("covariance / (N-1)", "bias after the square root", "filter bias 0.01"):
        other_mean, other_p = other_zca(gcn_train, how)
        assert np.abs(suite_white - (gcn_test - other_mean) @ other_p).max() > 1e3 * ZCA_ATOL, how
    for options in ({"use_std": True}, {"subtract_mean": False}):
        other = pylearn2_global_contrast_normalize(test.copy(), scale=55., **options)
        assert np.abs(global_contrast_normalize(torch.from_numpy(test)).numpy() - other).max() > 1e-3, options
