"""Profiles: the shipped ones load and do what they say; user profiles merge in the documented order;
malformed profiles fail with one line naming the field and the value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments import run
from experiments.profiles import PROFILES_FILE, Profile, load_profile, profile_names
from experiments.plan import expand, parse_overrides
from experiments.schema import SpecError
from experiments.spec import SPECS_DIR, load_spec


def test_shipped_profiles():
    assert profile_names() == ["paper", "fast", "smoke"]
    paper = load_profile("paper")
    assert (paper.seeds, paper.config, paper.config_by_dataset, paper.data, paper.timing) == (None, {}, {}, {}, {})
    fast = load_profile("fast")
    assert (fast.seeds, fast.config, fast.data) == (None, {"precision": "auto", "channels_last": "auto", "tf32": True}, {})
    smoke = load_profile("smoke")
    assert smoke.seeds == 1
    assert smoke.config == {"epochs": 2, "lr_milestones": [2], "batch_size": 16, "eval_batch_size": 64}
    assert smoke.config_by_dataset == {"imagenet": {"image_size": 64, "batch_size": 4, "world_size": 2}}
    assert smoke.data == {"synthetic": True, "train_images": 64, "test_images": 32}
    assert smoke.timing == {"warmup": 1, "repeats": 2}
    assert "\n" not in smoke.description


@pytest.mark.parametrize("profile", profile_names())
@pytest.mark.parametrize("spec", sorted(p.stem for p in SPECS_DIR.glob("*.toml")))
def test_every_spec_expands_under_every_profile(spec: str, profile: str):
    """Every run distinct; under the fast profile, the deviations rows its numerics erase drop out
    (tests/experiments/test_plan.py)."""
    runs = expand(load_spec(spec), profile)
    assert runs and len({r.run_id for r in runs}) == len(runs)


def test_paper_profile_keeps_the_recipe():
    runs = expand(load_spec("table_dropout"), "paper", seeds=1)
    svhn = next(r.config for r in runs if r.config.dataset == "svhn")
    cifar = next(r.config for r in runs if r.config.dataset == "cifar100")
    assert (svhn.lr, svhn.lr_milestones, svhn.lr_decay, svhn.epochs, svhn.batch_size) == (0.01, (80, 120), 0.1, 160, 128)
    assert (cifar.lr, cifar.lr_milestones, cifar.lr_decay, cifar.epochs, cifar.batch_size) == (
        0.1, (60, 120, 160), 0.2, 200, 128)


def test_unknown_profile_lists_the_profiles():
    with pytest.raises(SpecError) as info:
        load_profile("smok")
    message = str(info.value)
    assert "did you mean 'smoke'" in message and "paper, fast, smoke" in message and "\n" not in message
    with pytest.raises(SpecError, match="unknown profile 'quick'"):
        expand(load_spec("table_block_type"), "quick")


USER_PROFILES = """
[tiny]
description = "a user's profile"
seeds = 2
config = { batch_size = 8, epochs = 3, lr_milestones = [2] }
config_by_dataset = { cifar100 = { batch_size = 4 } }
data = { synthetic = true, train_images = 16, test_images = 8 }
"""


def test_user_profile_merges_in_the_documented_order(tmp_path: Path):
    path = tmp_path / "profiles.toml"
    path.write_text(USER_PROFILES)
    profile = load_profile("tiny", path=path)
    assert isinstance(profile, Profile) and profile.path == path
    spec = load_spec("table_width")  # spec base sets preprocessing zca; the profile does not touch it
    runs = expand(spec, profile)
    assert sorted({r.config.seed for r in runs}) == [0, 1]
    for planned in runs:
        cfg = planned.config
        assert cfg.batch_size == (4 if cfg.dataset == "cifar100" else 8)  # config_by_dataset over config
        assert (cfg.epochs, cfg.lr_milestones, cfg.preprocessing) == (3, (2,), "zca")
    overridden = expand(spec, profile, parse_overrides(["batch_size=2"]), seeds=1)  # --set over both
    assert {r.config.batch_size for r in overridden} == {2}
    assert {r.config.seed for r in overridden} == {0}  # the seeds argument over the profile's


def test_profile_value_out_of_range_names_the_profile_file(tmp_path: Path):
    path = tmp_path / "profiles.toml"
    path.write_text('[bad]\ndescription = "d"\nconfig = { epochs = 0 }\n')
    with pytest.raises(SpecError) as info:
        expand(load_spec("table_block_type"), load_profile("bad", path=path))
    assert str(info.value).startswith(f"{path}: bad.config.epochs: 0: ")


MALFORMED = [
    ("seed = 1", ["bad.seed", "did you mean 'seeds'"]),
    ("seeds = 0", ["bad.seeds", "0", "n >= 1"]),
    ("config = { detph = 16 }", ["bad.config", "'detph'", "did you mean 'depth'"]),
    ("config = { seed = 3 }", ["bad.config", "'seed'", "seeds"]),
    ('config = { epochs = "2" }', ["bad.config.epochs", "'2'", "integer"]),
    ("config_by_dataset = { mnist = { epochs = 1 } }", ["bad.config_by_dataset", "'mnist'", "cifar10"]),
    ("data = { synthetic = true, train_images = 0, test_images = 4 }", ["bad.data.train_images", "0", ">= 1"]),
    ("data = { train_images = 10 }", ["bad.data.train_images", "10", "synthetic = true"]),
    ("data = { synthetic = true, train_imgs = 4 }", ["bad.data.train_imgs", "did you mean 'train_images'"]),
    ("timing = { repeats = 0 }", ["bad.timing.repeats", "0", ">= 1"]),
    ("timing = { batch_size = 8 }", ["bad.timing.batch_size", "unknown key"]),
    ("config = ", ["invalid TOML"]),
]


@pytest.mark.parametrize("line,fragments", MALFORMED, ids=[line for line, _ in MALFORMED])
def test_malformed_profile_fails_with_one_line(tmp_path: Path, line: str, fragments: list[str]):
    path = tmp_path / "profiles.toml"
    path.write_text(f'[bad]\ndescription = "d"\n{line}\n')
    with pytest.raises(SpecError) as info:
        load_profile("bad", path=path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message


def test_profile_without_description_is_rejected(tmp_path: Path):
    path = tmp_path / "profiles.toml"
    path.write_text("[bad]\nseeds = 1\n")
    with pytest.raises(SpecError, match=r"bad.description: None: expected a non-empty string"):
        load_profile("bad", path=path)


def test_shipped_profiles_file_is_the_default():
    assert PROFILES_FILE == Path(__file__).resolve().parents[2] / "experiments" / "profiles.toml"


def test_profile_argument_takes_a_name_a_file_or_a_file_and_a_name(tmp_path: Path, capsys):
    several = tmp_path / "profiles.toml"
    several.write_text(USER_PROFILES + USER_PROFILES.replace("[tiny]", "[short]"))
    one = tmp_path / "mine.toml"
    one.write_text(USER_PROFILES)
    assert load_profile("smoke").source == "smoke"
    tiny = load_profile(f"{several}:tiny")
    assert (tiny.name, tiny.path, tiny.source) == ("tiny", several, f"{several.resolve()}:tiny")
    assert load_profile(str(one)).name == "tiny"  # a file of one profile needs no name
    assert (tiny.default_results(), tiny.suffix, tiny.output_stem("table_width")) == (
        Path("results") / "tiny", ".tiny", "table_width.tiny")
    paper = load_profile("paper")
    assert (paper.default_results(), paper.suffix) == (Path("results"), "")
    with pytest.raises(SpecError, match=r"holds the profiles tiny, short: name one, --profile .*profiles.toml:<name>"):
        load_profile(str(several))
    with pytest.raises(SpecError, match=r"no such profiles file"):
        load_profile(str(tmp_path / "missing.toml"))
    with pytest.raises(SpecError, match=r"unknown profile 'tinny' \(did you mean 'tiny'\?\)"):
        load_profile(f"{several}:tinny")
    # the runner takes every form: its dry run plans the user profile's seeds and sizes
    assert run.main(["table_width", "--profile", f"{several}:tiny", "--dry-run", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["config"]["seed"] for r in rows} == {0, 1} and {r["config"]["epochs"] for r in rows} == {3}


def test_a_user_profile_may_not_take_a_shipped_profiles_name(tmp_path: Path):
    path = tmp_path / "profiles.toml"
    path.write_text(USER_PROFILES.replace("[tiny]", "[smoke]"))
    with pytest.raises(SpecError, match=r"profile 'smoke' has the name of a shipped profile"):
        load_profile(f"{path}:smoke")
