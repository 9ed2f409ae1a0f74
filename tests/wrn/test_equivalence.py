"""The suite computes what the official code computes: the equivalences of the audit against
szagoruyko/wide-residual-networks, each checked against a transcription of the official source.

- The network: `WideResNet` gives the outputs, BN running statistics and gradients of the official
  functional WRN (pytorch/resnet.py@ae6d0d0), with dropout where the Lua model puts it
  (models/wide-resnet.lua@ae6d0d0), in training and evaluation mode.
- The optimiser: `make_optimizer` with `set_epoch_learning_rate` steps as optim.sgd (2016) driven by
  train.lua, which rebuilds the optimiser's state, hence the momentum buffer, at every drop.
- The schedule: `RunConfig.lr_at` gives train.lua's rate for every epoch of the CIFAR and SVHN scripts.
- The v1-era augmentation: the per_batch / half_batch draws of `CropFlip` reproduce
  augmentation.lua@0a4c364 as train.lua@0a4c364 chains it (`nn.BatchFlip`, then `nn.RandomCrop`).
- The fused SGD the suite runs on CUDA steps as the foreach SGD it runs on the CPU, across a reset.

The references are written here from the official files (cited as path@commit), never imported from
wrn/, so a change of the suite that departs from the official code fails here.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wrn.config import RunConfig, resolve
from wrn.data.augment import CropFlip
from wrn.models import build_model
from wrn.train import make_optimizer, set_epoch_learning_rate

BN_ENTRIES = ("weight", "bias", "running_mean", "running_var")  # bnparams of pytorch/utils.py@ae6d0d0
BATCH = 4
NUM_CLASSES = 10  # every network here is a CIFAR-10 one


# --------------------------------------------------------------------------------------------------
# The network: the official PyTorch functional WRN


def official_param_shapes(depth: int, width: int, num_classes: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of `flat_params` of resnet() (pytorch/resnet.py@ae6d0d0): conv_params(ni, no, k)
    is (no, ni, k, k), bnparams(n) four (n,) tensors, linear_params(ni, no) (no, ni) and (no,); a block
    has `convdim` only where ni != no."""
    n = (depth - 4) // 6
    widths = [v * width for v in (16, 32, 64)]
    shapes: dict[str, tuple[int, ...]] = {"conv0": (16, 3, 3, 3)}

    def bnparams(base: str, planes: int) -> None:
        shapes.update({f"{base}.{entry}": (planes,) for entry in BN_ENTRIES})

    group_in = 16
    for g, no in enumerate(widths):
        for i in range(n):
            base, ni = f"group{g}.block{i}", group_in if i == 0 else no
            shapes[f"{base}.conv0"], shapes[f"{base}.conv1"] = (no, ni, 3, 3), (no, no, 3, 3)
            bnparams(f"{base}.bn0", ni)
            bnparams(f"{base}.bn1", no)
            if ni != no:
                shapes[f"{base}.convdim"] = (no, ni, 1, 1)
        group_in = no
    bnparams("bn", widths[2])
    shapes["fc.weight"], shapes["fc.bias"] = (num_classes, widths[2]), (num_classes,)
    return shapes


def official_forward(inputs: torch.Tensor, params: dict[str, torch.Tensor], mode: bool, depth: int,
                     dropout: float) -> torch.Tensor:
    """`f` of resnet() (pytorch/resnet.py@ae6d0d0) with utils.batch_norm's F.batch_norm. That file has
    no dropout; it sits between bn1-ReLU and conv1 as in wide_basic of models/wide-resnet.lua@ae6d0d0,
    only when the rate is > 0 (`if opt.dropout > 0`), where the author also places it for the PyTorch
    code."""
    n = (depth - 4) // 6

    def batch_norm(x, base):
        return F.batch_norm(x, weight=params[base + ".weight"], bias=params[base + ".bias"],
                            running_mean=params[base + ".running_mean"],
                            running_var=params[base + ".running_var"], training=mode)

    def block(x, base, stride):
        o1 = F.relu(batch_norm(x, base + ".bn0"), inplace=True)
        y = F.conv2d(o1, params[base + ".conv0"], stride=stride, padding=1)
        o2 = F.relu(batch_norm(y, base + ".bn1"), inplace=True)
        if dropout > 0:
            o2 = F.dropout(o2, dropout, training=mode)
        z = F.conv2d(o2, params[base + ".conv1"], stride=1, padding=1)
        if base + ".convdim" in params:
            return z + F.conv2d(o1, params[base + ".convdim"], stride=stride)
        return z + x

    def group(o, base, stride):
        for i in range(n):
            o = block(o, f"{base}.block{i}", stride if i == 0 else 1)
        return o

    x = F.conv2d(inputs, params["conv0"], padding=1)
    g0 = group(x, "group0", 1)
    g1 = group(g0, "group1", 2)
    g2 = group(g1, "group2", 2)
    o = F.relu(batch_norm(g2, "bn"))
    o = F.avg_pool2d(o, 8, 1, 0)
    o = o.view(o.size(0), -1)
    return F.linear(o, params["fc.weight"], params["fc.bias"])


def suite_to_official_names(depth: int, width: int, dropout: float) -> dict[str, str]:
    """The suite's state_dict key of each official parameter, written out from the suite's layout
    (conv1; groups conv2-conv4 of blocks with `preact` = BN-ReLU and `branch` = conv0, BN, ReLU,
    [Dropout], conv1; `shortcut`; `head` = BN-ReLU-pool; fc) and the official structure: a block gets
    a shortcut exactly where the official one has `convdim`."""
    official = official_param_shapes(depth, width, NUM_CLASSES)
    conv1_index = 4 if dropout > 0 else 3

    def bn(suite: str, base: str) -> dict[str, str]:
        return {f"{suite}.{entry}": f"{base}.{entry}" for entry in BN_ENTRIES}

    names = {"conv1.weight": "conv0", **bn("head.0", "bn"), "fc.weight": "fc.weight", "fc.bias": "fc.bias"}
    for g in range(3):
        for i in range((depth - 4) // 6):
            suite, base = f"conv{g + 2}.{i}", f"group{g}.block{i}"
            names |= bn(f"{suite}.preact.0", f"{base}.bn0") | bn(f"{suite}.branch.1", f"{base}.bn1")
            names[f"{suite}.branch.0.weight"] = f"{base}.conv0"
            names[f"{suite}.branch.{conv1_index}.weight"] = f"{base}.conv1"
            if f"{base}.convdim" in official:
                names[f"{suite}.shortcut.weight"] = f"{base}.convdim"
    return names


def official_params(model: nn.Module, names: dict[str, str]) -> dict[str, torch.Tensor]:
    """The suite's weights and BN buffers copied into official flat_params; everything but the
    running statistics requires grad (set_requires_grad_except_bn_ of pytorch/utils.py@ae6d0d0)."""
    state = model.state_dict()
    params = {}
    for suite, official in names.items():
        tensor = state[suite].detach().clone()
        params[official] = tensor.requires_grad_(not official.endswith(("running_mean", "running_var")))
    return params


NETWORKS = [  # (depth, k, dropout)
    pytest.param(16, 4, 0.0, id="WRN-16-4"),
    pytest.param(16, 4, 0.3, id="WRN-16-4-dropout-0.3"),
    pytest.param(16, 1, 0.0, id="WRN-16-1-identity-first-group"),
]


def suite_network(depth: int, k: int, dropout: float) -> tuple[nn.Module, dict[str, torch.Tensor], dict[str, str]]:
    """The suite's network in float64 and its official flat_params copy, with the key map between them."""
    torch.manual_seed(0)
    cfg = resolve(RunConfig(dataset="cifar10", depth=depth, k=k, dropout=dropout, preprocessing="meanstd"))
    model = build_model(cfg).double()
    names = suite_to_official_names(depth, k, dropout)
    return model, official_params(model, names), names


def images(seed: int = 1) -> torch.Tensor:
    return torch.randn(BATCH, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def forward_both(model, params, depth, dropout, mode: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Both networks on the same images, torch's RNG seeded alike so that dropout draws the same masks."""
    x = images()
    model.train(mode)
    torch.manual_seed(123)
    suite_out = model(x)
    torch.manual_seed(123)
    return suite_out, official_forward(x, params, mode, depth, dropout)


@pytest.mark.parametrize("depth, k, dropout", NETWORKS)
def test_every_suite_parameter_and_buffer_is_one_official_parameter(depth, k, dropout):
    """The map is a bijection between the suite's parameters and BN buffers and the official
    flat_params, shape for shape. `num_batches_tracked` has no official counterpart and enters no
    computation while every BN has momentum 0.1 and eps 1e-5, F.batch_norm's defaults that the
    official code uses."""
    model, _, names = suite_network(depth, k, dropout)
    state = model.state_dict()
    counted = {key for key in state if not key.endswith("num_batches_tracked")}
    assert sorted(names) == sorted(counted)
    official = official_param_shapes(depth, k, NUM_CLASSES)
    assert sorted(names.values()) == sorted(official)  # each official entry used once
    assert {key: tuple(state[key].shape) for key in names} == {key: official[names[key]] for key in names}
    assert {(m.momentum, m.eps) for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {(0.1, 1e-5)}


@pytest.mark.parametrize("depth, k, dropout", NETWORKS)
def test_forward_and_bn_statistics_equal_the_official_network(depth, k, dropout):
    """Train mode (batch statistics, running statistics updated), then eval mode with the statistics
    that forward left behind."""
    model, params, names = suite_network(depth, k, dropout)
    with torch.no_grad():
        suite_out, official_out = forward_both(model, params, depth, dropout, mode=True)
        torch.testing.assert_close(suite_out, official_out, rtol=0, atol=1e-12)
        state = model.state_dict()
        for suite, official in names.items():
            if official.endswith(("running_mean", "running_var")):
                torch.testing.assert_close(state[suite], params[official], rtol=0, atol=1e-12, msg=suite)
        suite_out, official_out = forward_both(model, params, depth, dropout, mode=False)
        torch.testing.assert_close(suite_out, official_out, rtol=0, atol=1e-12)


@pytest.mark.parametrize("depth, k, dropout", NETWORKS)
def test_gradients_equal_the_official_network(depth, k, dropout):
    model, params, names = suite_network(depth, k, dropout)
    suite_out, official_out = forward_both(model, params, depth, dropout, mode=True)
    weights = torch.randn(suite_out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    (suite_out * weights).sum().backward()
    (official_out * weights).sum().backward()
    suite_params = dict(model.named_parameters())
    assert sorted(suite_params) == sorted(key for key, name in names.items() if params[name].requires_grad)
    for key, param in suite_params.items():
        torch.testing.assert_close(param.grad, params[names[key]].grad, rtol=0, atol=1e-12, msg=key)


def test_dropout_masks_change_the_training_output():
    """Without this, the dropout case above could pass with masks that never apply."""
    model, params, _ = suite_network(16, 4, 0.3)
    with torch.no_grad():
        suite_out, _ = forward_both(model, params, 16, 0.3, mode=True)
        without_dropout = official_forward(images(), params, True, 16, 0.0)
    assert (suite_out - without_dropout).abs().max() > 1e-3


# --------------------------------------------------------------------------------------------------
# The optimiser: optim.sgd as train.lua drives it

# train.lua@ae6d0d0's defaults (and train.lua@0a4c364's) with scripts/train_cifar.sh@ae6d0d0
LUA_CIFAR = dict(learningRate=0.1, learningRateDecayRatio=0.2, epoch_step=(60, 120, 160), max_epoch=200,
                 weightDecay=0.0005, momentum=0.9, dampening=0, nesterov=True)
LUA_SVHN = dict(LUA_CIFAR, learningRate=0.01, learningRateDecayRatio=0.1, epoch_step=(80, 120), max_epoch=160)
STEPS_PER_EPOCH = 2
EPOCHS_WITH_STEPS = (1, 59, 60, 61, 120)  # around the drops at 60 and 120


def lua_sgd(x: torch.Tensor, dfdx: torch.Tensor, config: dict, state: dict) -> torch.Tensor:
    """One optim.sgd call (torch/optim sgd.lua, 2016) with learningRateDecay 0, on the flat parameter
    vector of model:getParameters(). A fresh `state` (no dfdx) starts the momentum buffer from the
    gradient, without dampening."""
    dfdx = dfdx + config["weightDecay"] * x
    if config["momentum"] != 0:
        if "dfdx" not in state:
            state["dfdx"] = dfdx.clone()
        else:
            state["dfdx"] = config["momentum"] * state["dfdx"] + (1 - config["dampening"]) * dfdx
        dfdx = dfdx + config["momentum"] * state["dfdx"] if config["nesterov"] else state["dfdx"]
    return x - config["learningRate"] * dfdx


def lua_training(x: torch.Tensor, gradients: dict[int, list[torch.Tensor]], rebuild_state: bool) -> torch.Tensor:
    """train.lua@ae6d0d0's epochs with LUA_CIFAR: at onStartEpoch of an epoch in epoch_step, the rate
    is multiplied in place and `state.optim = tablex.deepcopy(opt)` rebuilds the state (train.lua@0a4c364
    does the same with `optimState`); `rebuild_state=False` keeps it, the he-2016 variant."""
    config, state = dict(LUA_CIFAR), {}
    for epoch in range(1, max(gradients) + 1):
        if epoch in config["epoch_step"]:
            config["learningRate"] = config["learningRate"] * config["learningRateDecayRatio"]
            if rebuild_state:
                state = {}
        for dfdx in gradients.get(epoch, []):
            x = lua_sgd(x, dfdx, config, state)
    return x


def suite_training(model: nn.Module, cfg: RunConfig, gradients: dict[int, list[list[torch.Tensor]]]) -> torch.Tensor:
    """The engine's optimiser calls: `set_epoch_learning_rate(..., starting=True)` at every epoch,
    then one step per given set of gradients; the parameters flattened as getParameters() would."""
    optimizer = make_optimizer(model, cfg, torch.device("cpu"))
    for epoch in range(1, max(gradients) + 1):
        set_epoch_learning_rate(optimizer, cfg, epoch, starting=True)
        for grads in gradients.get(epoch, []):
            for param, grad in zip(model.parameters(), grads):
                param.grad = grad.clone()
            optimizer.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def sgd_problem() -> tuple[nn.Module, dict[int, list[list[torch.Tensor]]]]:
    """A float64 WRN-10-1 (its BN and fc parameters included) and random gradients for each step."""
    torch.manual_seed(0)
    model = build_model(resolve(RunConfig(dataset="cifar10", depth=10, k=1))).double()
    generator = torch.Generator().manual_seed(3)
    gradients = {epoch: [[torch.randn(p.shape, dtype=torch.float64, generator=generator) for p in model.parameters()]
                         for _ in range(STEPS_PER_EPOCH)] for epoch in EPOCHS_WITH_STEPS}
    return model, gradients


def flat(gradients: dict[int, list[list[torch.Tensor]]]) -> dict[int, list[torch.Tensor]]:
    """Each step's gradients as the one flat gradParameters vector the Lua code steps with."""
    return {epoch: [torch.cat([g.flatten() for g in grads]) for grads in steps] for epoch, steps in gradients.items()}


def test_the_resolved_cifar_optimiser_has_the_lua_hyperparameters():
    cfg = resolve(RunConfig(dataset="cifar10"))
    assert (cfg.lr, cfg.momentum, cfg.dampening, cfg.weight_decay, cfg.nesterov) == (
        LUA_CIFAR["learningRate"], LUA_CIFAR["momentum"], LUA_CIFAR["dampening"], LUA_CIFAR["weightDecay"],
        LUA_CIFAR["nesterov"])
    assert cfg.reset_momentum_on_decay is True


@pytest.mark.parametrize("reset", [True, False], ids=["state-rebuilt-at-drops", "momentum-kept"])
def test_sgd_steps_equal_lua_optim_sgd_across_drops(reset):
    """Every parameter (weight decay on BN and fc bias too) after steps in epochs 1, 59, 60, 61 and 120:
    equal to optim.sgd's, with the momentum buffer restarted from the gradient after each drop when
    `reset_momentum_on_decay` (the official code), kept otherwise; and the two differ."""
    model, gradients = sgd_problem()
    x0 = torch.cat([p.detach().flatten() for p in model.parameters()])
    cfg = dataclasses.replace(resolve(RunConfig(dataset="cifar10", depth=10, k=1)), reset_momentum_on_decay=reset)
    suite = suite_training(model, cfg, gradients)
    torch.testing.assert_close(suite, lua_training(x0, flat(gradients), rebuild_state=reset), rtol=1e-13, atol=1e-14)
    other = lua_training(x0, flat(gradients), rebuild_state=not reset)
    assert (suite - other).abs().max() > 1e-6


# --------------------------------------------------------------------------------------------------
# The schedule


def lua_learning_rates(script: dict) -> list[float]:
    """The rate of epochs 1..max_epoch under train.lua@ae6d0d0's onStartEpoch: `epoch = state.epoch + 1`;
    if epoch is in epoch_step, `opt.learningRate = opt.learningRate * opt.learningRateDecayRatio`."""
    lr, rates = script["learningRate"], []
    for state_epoch in range(script["max_epoch"]):
        if state_epoch + 1 in script["epoch_step"]:
            lr = lr * script["learningRateDecayRatio"]
        rates.append(lr)
    return rates


@pytest.mark.parametrize("dataset, script", [("cifar10", LUA_CIFAR), ("svhn", LUA_SVHN)],
                         ids=["cifar10-train_cifar.sh", "svhn-train_svhn.sh"])
def test_learning_rate_of_every_epoch_equals_train_lua(dataset, script):
    """scripts/train_cifar.sh@ae6d0d0: 0.1, x0.2 at {60,120,160}, 200 epochs; scripts/train_svhn.sh@ae6d0d0:
    0.01, x0.1 at {80,120}, 160 epochs. The Lua code multiplies in place, lr_at takes a power: the two
    may differ in the last bit of a double (SVHN's last stage: 1e-4 against 1.0000000000000002e-4)."""
    cfg = resolve(RunConfig(dataset=dataset))
    assert cfg.epochs == script["max_epoch"]
    assert [cfg.lr_at(epoch) for epoch in range(1, cfg.epochs + 1)] == pytest.approx(lua_learning_rates(script),
                                                                                    rel=1e-15, abs=0)


# --------------------------------------------------------------------------------------------------
# The v1-era augmentation: augmentation.lua@0a4c364

PAD = 4


def lua_flip_then_crop(batch: torch.Tensor, flip_mask: torch.Tensor, x: int, y: int, mode: str) -> torch.Tensor:
    """train.lua@0a4c364's `nn.BatchFlip` then `nn.RandomCrop(4, mode)` (augmentation.lua@0a4c364):
    image.hflip of the images in the mask, the whole batch padded by SpatialReflectionPadding (torch's
    "reflect") or SpatialZeroPadding, then `narrow(4, x, imsize):narrow(3, y, imsize)` with x, y here
    0-indexed (Lua's torch.random(1, 2*pad + 1) minus 1)."""
    flipped = torch.stack([image.flip(-1) if flip else image for image, flip in zip(batch, flip_mask.tolist())])
    padded = F.pad(flipped, (PAD,) * 4, mode="reflect" if mode == "reflection" else "constant")
    size = batch.shape[-1]
    return padded.narrow(3, x, size).narrow(2, y, size)


def lua_offsets(dy: torch.Tensor, dx: torch.Tensor, flips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the (y, x) at which the Lua code cuts the padded *flipped* image: a flipped image cut
    at column x is the unflipped one cut at the mirrored column 2*pad - x."""
    return dy, torch.where(flips, 2 * PAD - dx, dx)


@pytest.mark.parametrize("mode", ["reflection", "zero"])
@pytest.mark.parametrize("n", [128, 7])
def test_era_draws_and_crops_equal_augmentation_lua(n, mode):
    """One (y, x) for the whole batch, exactly floor(n/2) images flipped (`randperm(bs):le(bs/2)`),
    flipped images cut at 2*pad - x, and the output equal to the Lua chain's; over 30 batches the
    offsets take several values."""
    aug = CropFlip(32, 32, PAD, "reflect" if mode == "reflection" else "zeros", hflip=True,
                   crop_draw="per_batch", flip_draw="half_batch")
    generator = torch.Generator().manual_seed(4)
    seen = set()
    for _ in range(30):
        dy, dx, flips = aug.draw(n, generator)
        assert int(flips.sum()) == n // 2
        y, x = int(dy[0]), int(dx[~flips][0])
        assert torch.all(dy == y) and torch.all(dx[~flips] == x) and torch.all(dx[flips] == 2 * PAD - x)
        assert 0 <= y <= 2 * PAD and 0 <= x <= 2 * PAD
        batch = torch.randn(n, 3, 32, 32, generator=generator)
        assert torch.equal(aug.apply(batch, dy, dx, flips), lua_flip_then_crop(batch, flips, x, y, mode))
        seen.add((y, x))
    assert len(seen) > 1


@pytest.mark.parametrize("crop_draw, flip_draw", [("per_image", "per_image"), ("per_batch", "half_batch")])
def test_only_per_batch_draws_share_one_crop_across_the_batch(crop_draw, flip_draw):
    aug = CropFlip(32, 32, PAD, crop_draw=crop_draw, flip_draw=flip_draw)
    generator = torch.Generator().manual_seed(5)
    for _ in range(10):
        y, x = lua_offsets(*aug.draw(128, generator))
        shared = bool(torch.all(y == y[0]) and torch.all(x == x[0]))
        assert shared == (crop_draw == "per_batch")


# --------------------------------------------------------------------------------------------------
# Fused SGD (CUDA) against foreach SGD (CPU)

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES)
def test_fused_sgd_equals_foreach_sgd_across_a_momentum_reset(device):
    """make_optimizer is fused on CUDA and foreach on the CPU: with make_optimizer's hyperparameters,
    both give the same float64 parameters over 20 steps with the drop of epoch 60 (state cleared by
    `set_epoch_learning_rate`) in the middle, to float64 rounding."""
    model, _ = sgd_problem()
    cfg = resolve(RunConfig(dataset="cifar10", depth=10, k=1))
    hyper = {key: make_optimizer(model, cfg, torch.device("cpu")).defaults[key]
             for key in ("lr", "momentum", "dampening", "weight_decay", "nesterov")}
    start = [p.detach().to(device) for p in model.parameters()]
    runs = {}
    for kind in ("foreach", "fused"):
        params = [p.clone().requires_grad_() for p in start]
        optimizer = torch.optim.SGD(params, **hyper, **{kind: True})
        generator = torch.Generator().manual_seed(6)
        for epoch in (59, 60):
            set_epoch_learning_rate(optimizer, cfg, epoch, starting=True)
            assert not optimizer.state  # fresh at 59, cleared by the drop at 60
            for _ in range(10):
                for p in params:
                    p.grad = torch.randn(p.shape, dtype=torch.float64, generator=generator).to(device)
                optimizer.step()
        runs[kind] = torch.cat([p.detach().flatten() for p in params])
    assert optimizer.defaults["fused"] and optimizer.param_groups[0]["lr"] == pytest.approx(0.02)
    torch.testing.assert_close(runs["fused"], runs["foreach"], rtol=1e-13, atol=1e-15)
    assert not torch.equal(runs["fused"], torch.cat([p.flatten() for p in start]))
