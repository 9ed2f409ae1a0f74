"""Run profiles: named scalings of every spec (the paper's recipe, a CPU smoke test, ...).

They are data in `experiments/profiles.toml` (its header documents the keys and how to add one), or in
a file of your own of the same layout, so a profile's effect on every run is visible in one file and
recorded through the run config it changes. This module loads and validates them;
`experiments.plan.expand` applies them.

A profile is named on the command line (`--profile`) as a shipped profile's name ("smoke"), as the path
of a profiles file that holds one profile ("my_profiles.toml"), or as a path and a name
("my_profiles.toml:short"). Every profile but the paper's writes into its own results folder by
default, `results/<name>/`, and every file the analysis writes for it carries its name, so that no
scaled-down run can be taken for a reproduction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.schema import (SpecError, check_choice, check_keys, check_partial, display_path, expect_str,
                                fail, parse_timing, read_toml)
from wrn.config import DATASETS
from wrn.errors import suggest

PROFILES_FILE = Path(__file__).resolve().parent / "profiles.toml"
_PROFILE_KEYS = ("description", "seeds", "config", "config_by_dataset", "data", "timing")
_DATA_KEYS = ("synthetic", "train_images", "test_images")


PAPER = "paper"  # the paper's recipe on the real data: the profile of a reproduction


@dataclass(frozen=True)
class Profile:
    """A validated profile. `seeds` None keeps each spec's seeds; `data` is {} for the real data or
    {"synthetic": True, "train_images": n, "test_images": m}; `timing` overrides warmup/repeats."""

    name: str
    description: str
    seeds: int | None
    config: dict[str, Any]
    config_by_dataset: dict[str, dict[str, Any]]
    data: dict[str, Any]
    timing: dict[str, int] = field(default_factory=dict)
    path: Path = PROFILES_FILE

    @property
    def source(self) -> str:
        """How `--profile` names this profile: its name when shipped, else "<file>:<name>"."""
        return self.name if self.path.resolve() == PROFILES_FILE else f"{self.path.resolve()}:{self.name}"

    def default_results(self) -> Path:
        """results/ for the paper's profile, results/<name>/ for any other."""
        return Path("results") if self.name == PAPER else Path("results") / self.name

    @property
    def suffix(self) -> str:
        """What the names of this profile's tables and figures end with: nothing for the paper's
        profile, ".<profile>" for any other (table_block_type.smoke.md), so that a file says what it
        summarises."""
        return "" if self.name == PAPER else f".{self.name}"

    def output_stem(self, spec: str) -> str:
        return spec + self.suffix

    def describe(self) -> str:
        data = self.data
        what = ("generated data, " f"{data['train_images']} training and {data['test_images']} test images"
                if data else "the real data")
        return f"profile {self.name} ({what})"


def profile_names(path: Path | str = PROFILES_FILE) -> list[str]:
    return list(read_toml(Path(path)))


def load_profile(name: str, path: Path | str | None = None) -> Profile:
    """A profile as `--profile` names it (module docstring), or `name` of the profiles file `path`;
    validated."""
    if path is None:
        path, name = _locate(name)
    path = Path(path)
    where = display_path(path)
    profiles = read_toml(path)
    if name is None:
        if len(profiles) != 1:
            raise SpecError(f"{where}: holds the profiles {', '.join(profiles)}: name one, "
                            f"--profile {where}:<name>")
        name = next(iter(profiles))
    if Path(path).resolve() != PROFILES_FILE and name in profile_names():
        raise SpecError(f"{where}: profile {name!r} has the name of a shipped profile, whose results folder and "
                        "file names it would share: name it differently")
    if name not in profiles:
        raise SpecError(f"{where}: unknown profile {name!r}{suggest(str(name), profiles)}; "
                        f"the profiles are: {', '.join(profiles)}")
    raw = profiles[name]
    if not isinstance(raw, dict):
        raise fail(where, name, raw, "expected a table of profile keys")
    check_keys(where, f"{name}.", raw, _PROFILE_KEYS)
    description = raw.get("description")
    expect_str(where, f"{name}.description", description)
    seeds = raw.get("seeds")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise fail(where, f"{name}.seeds", seeds, "expected an integer n >= 1 (seeds 0..n-1)")
    config = check_partial(where, f"{name}.config", raw.get("config", {}))
    by_dataset = {}
    raw_by_dataset = raw.get("config_by_dataset", {})
    if not isinstance(raw_by_dataset, dict):
        raise fail(where, f"{name}.config_by_dataset", raw_by_dataset, "expected a table {dataset = {fields}}")
    for dataset, layer in raw_by_dataset.items():
        check_choice(where, f"{name}.config_by_dataset", dataset, DATASETS)
        by_dataset[dataset] = check_partial(where, f"{name}.config_by_dataset.{dataset}", layer)
    data = _parse_data(where, f"{name}.data", raw.get("data", {}))
    timing = parse_timing(where, f"{name}.timing", raw.get("timing", {}), required=False)
    return Profile(name=name, description=" ".join(description.split()), seeds=seeds, config=config,
                   config_by_dataset=by_dataset, data=data, timing=timing, path=path)


def _locate(text: str) -> tuple[Path, str | None]:
    """(profiles file, profile name or None for its only one) of a `--profile` argument."""
    text = str(text)
    if ".toml" not in text:
        return PROFILES_FILE, text
    file, _, name = text.partition(".toml")
    path = Path(file + ".toml")
    if name and not name.startswith(":"):
        raise SpecError(f"--profile: {text!r}: expected a profile name, a profiles file, or <file>.toml:<name>")
    if not path.is_file():
        raise SpecError(f"--profile: {path}: no such profiles file")
    return path, name[1:] or None


def _parse_data(where: str, prefix: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise fail(where, prefix, raw, "expected a table {synthetic, train_images, test_images}")
    check_keys(where, f"{prefix}.", raw, _DATA_KEYS)
    if not raw.get("synthetic", False):
        if "synthetic" in raw and raw["synthetic"] is not False:
            raise fail(where, f"{prefix}.synthetic", raw["synthetic"], "expected true or false")
        for key in ("train_images", "test_images"):
            if key in raw:
                raise fail(where, f"{prefix}.{key}", raw[key], "only generated data has a size: set synthetic = true")
        return {}
    if raw["synthetic"] is not True:
        raise fail(where, f"{prefix}.synthetic", raw["synthetic"], "expected true or false")
    for key in ("train_images", "test_images"):
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail(where, f"{prefix}.{key}", value, "expected an integer >= 1 (synthetic data needs a size)")
    return dict(raw)
