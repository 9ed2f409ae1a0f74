"""Estimates: the shape arithmetic of wrn.sizes gives exactly the parameters and forward FLOPs of the
built networks (`wrn.models.count_params`, `forward_flops`) for every network of every shipped spec
under the paper and smoke profiles (the smoke profile shrinks ImageNet's images), so a dry run's sizes
are the trained networks'; a dry run imports no heavy package; the time model adds each run's
overhead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments.estimate import estimate, format_duration, format_estimates
from experiments.plan import expand, parse_overrides
from experiments.spec import list_specs, load_spec
from wrn.config import RunConfig
from wrn.models import build_model, count_params, forward_flops
from wrn.sizes import network_size
from experiments.rates import ENV_TFLOPS, RateBook
from wrn import throughput
from wrn.throughput import RUN_OVERHEAD_SECONDS, assumed_rate, run_flops

REPO = Path(__file__).resolve().parents[2]


def shape(cfg: RunConfig) -> tuple:
    """What a network's size depends on. The thin pre-activation ResNets (ResNet-1001 alone takes
    seconds to count by building) are checked once per depth whatever their number of classes, which
    only sizes the fc that `wrn.sizes` counts the same way for every architecture; the WRNs check it
    for 10 and 100 classes (`test_every_architecture_and_classifier_is_covered`)."""
    classes = None if cfg.arch == "preact_resnet" else cfg.num_classes
    return (cfg.arch, cfg.k, cfg.block, cfg.blocks_per_group, cfg.image_size, classes)


def _shipped_networks() -> dict[str, RunConfig]:
    networks: dict[tuple, tuple[str, RunConfig]] = {}
    for spec in list_specs():
        for profile in ("paper", "smoke"):
            for run in expand(spec, profile, seeds=1):
                networks.setdefault(shape(run.config), (f"{run.label}/{run.config.dataset}@{run.config.image_size}",
                                                        run.config))
    return dict(networks.values())


NETWORKS = _shipped_networks()


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_counted_sizes_equal_the_built_networks(name):
    cfg = NETWORKS[name]
    with torch.device("meta"):
        params = count_params(build_model(cfg))
    assert network_size(cfg) == (params, forward_flops(cfg))


def test_every_architecture_and_classifier_is_covered():
    assert {cfg.arch for cfg in NETWORKS.values()} == {"wrn", "preact_resnet", "wrn50_2_bottleneck"}
    assert {cfg.num_classes for cfg in NETWORKS.values()} == {10, 100, 1000}
    assert {cfg.image_size for cfg in NETWORKS.values() if cfg.arch == "wrn50_2_bottleneck"} == {224, 64}


HEAVY = ("torch", "torchvision", "pandas", "matplotlib", "scipy")


@pytest.mark.parametrize("code", [
    "from experiments.run import main; main(['--list'])",
    "from experiments.run import main; main(['table_comparison', '--dry-run'])",
    "from experiments.run import main; main(['deviations', '--dry-run', '--json'])",
    "import experiments.status",
])
def test_listing_dry_runs_and_status_import_no_heavy_package(code):
    """What keeps them at about a second whatever the specs hold: no torch, pandas or matplotlib."""
    check = f"import sys; {code}; print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stderr.strip().splitlines()[-1] == "[]"


@pytest.fixture(autouse=True)
def _no_rate_in_the_environment(monkeypatch):
    monkeypatch.delenv(ENV_TFLOPS, raising=False)


def book(device_type: str) -> RateBook:
    """The rates of this machine's CPU or of the default GPU, nothing measured."""
    return RateBook(device_type, None, [])


def test_a_cpu_estimate_adds_each_runs_overhead_to_its_flops():
    runs = expand(load_spec("table_block_type"), "smoke")
    rate = assumed_rate("cpu", None, "fp32").flops
    rows = estimate(runs, book("cpu"))
    for run, row in zip(runs, rows):
        compute = run_flops(run.config, row.flops) / rate
        assert row.est_seconds == pytest.approx(RUN_OVERHEAD_SECONDS["cpu"] + compute)
        assert compute > 0 and RUN_OVERHEAD_SECONDS["cpu"] > 0


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_that_emulates_it_is_estimated_slower(monkeypatch, native):
    monkeypatch.setattr(throughput, "cpu_has_native_bf16", lambda: native)
    runs = [p for p in expand(load_spec("deviations"), "smoke") if p.config.depth == 16]
    fp32, bf16 = (next(r for r in estimate(runs, book("cpu")) if r.precision == precision and r.config.tf32 is False
                       and r.config.crop_draw == "per_batch" and r.config.preprocessing == "zca"
                       and r.config.recipe == "v1-2016-05" and r.config.conv_init == "fan_out"
                       and r.config.bn_init == "uniform" and r.config.pad_mode == "reflect"
                       and r.config.flip_draw == "half_batch" and r.config.drop_last
                       and r.config.nesterov and r.config.reset_momentum_on_decay)
                  for precision in ("fp32", "bf16"))
    overhead = RUN_OVERHEAD_SECONDS["cpu"]
    slowdown = 1.0 if native else throughput.EMULATED_BF16_SLOWDOWN
    assert bf16.est_seconds - overhead == pytest.approx(slowdown * (fp32.est_seconds - overhead))
    on_gpu = {r.precision: r.est_seconds for r in estimate(runs, book("cuda")) if r.run_id in (fp32.run_id, bf16.run_id)}
    # a GPU computes bf16 natively, on its tensor cores: at the ratio of the two assumed rates
    ratio = assumed_rate("cuda", None, "bf16").flops / assumed_rate("cuda", None, "fp32").flops
    assert on_gpu["fp32"] == pytest.approx(ratio * on_gpu["bf16"]) and ratio > 1


def test_a_timing_run_costs_its_measured_steps():
    runs = expand(load_spec("figure_timing"), "smoke")
    for run, row in zip(runs, estimate(runs, book("cpu"))):
        steps = run.timing["warmup"] + run.timing["repeats"]
        assert row.est_seconds == pytest.approx(RUN_OVERHEAD_SECONDS["cpu"] + steps * run.timing["batch_size"] * 3
                                                * row.flops / assumed_rate("cpu", None, "fp32").flops)


@pytest.mark.parametrize("seconds, text", [(150, "2.5 CPU-minutes"), (3599, "60.0 CPU-minutes"),
                                           (5400, "1.50 CPU-hours")])
def test_a_launch_states_minutes_under_an_hour(seconds, text):
    assert format_duration(seconds, "cpu") == text


def test_a_distributed_run_costs_the_same_device_hours_in_1_over_w_of_the_wall_time():
    """Data parallelism shares each step's batch: the same work (FLOPs), spread over W devices."""
    spec = load_spec("table_block_type")
    single = estimate(expand(spec, "paper", seeds=1), book("cuda"))
    spread = estimate(expand(spec, "paper", parse_overrides(["world_size=8", "batch_size=128"]), seeds=1), book("cuda"))
    for one, eight in zip(single, spread):
        assert eight.est_seconds == pytest.approx(one.est_seconds) and eight.wall_seconds == eight.est_seconds / 8
        assert eight.load().world_size == 8 and eight.load().seconds == eight.est_seconds
    text = format_estimates(spread, "GPU")
    total = format_duration(sum(e.est_seconds for e in spread), "GPU")
    total_line = next(line for line in text.splitlines() if line.startswith("6 runs"))
    assert total_line.startswith(f"6 runs, estimated {total} in all, the time of every process counted; "
                                 "a run of world_size N")
    assert "takes about 1/N of its GPU-hours in wall time (wall-h)" in text
    assert "world_size" not in format_estimates(single, "GPU")  # said only where a run is spread


def test_a_timing_measurement_is_never_packed():
    runs = expand(load_spec("figure_timing"), "smoke")
    assert {row.kind for row in estimate(runs, book("cpu"))} == {"timing"}
    assert not any(row.load().packable for row in estimate(runs, book("cpu")))
