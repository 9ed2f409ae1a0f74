"""Experiment specs: one TOML file per paper table or figure, expanded into planned runs.

A spec is data, not code, so that what a table trains can be read, diffed and checked without running
anything; this module is the only place that knows the schema, validates it and expands it.

Schema (`experiments/specs/<name>.toml`, or any user file passed by path)
--------------------------------------------------------------------------
Top-level keys:
  name          str, [a-z0-9_]; equals the file stem for shipped specs. A user spec may not take a
                shipped spec's name (its runs would be stored and reported with that table's).
  title         str, e.g. "Table 2: block type".
  paper_ref     str, where in the paper (arXiv v4) the numbers come from.
  description   str, what the spec runs and what it had to infer.
  kind          "train" | "timing" (timing: a forward+backward measurement, no training).
  seeds         int n >= 1 (seeds 0..n-1) or a list of distinct ints >= 0.
  metrics       list of the metrics the spec reports, from METRICS.
  paper_results optional str: path (relative to the repo root) of the tidy CSV of the paper's numbers;
                every shipped spec has one, `results/paper/<name>.csv`.
[base]          RunConfig fields shared by every run. ``dropout = true/false`` means the paper's rate
                for the run's dataset (0.3 CIFAR, 0.4 SVHN) / none. ``seed`` is not a field here: the
                top-level ``seeds`` define it.
[base_by_dataset.<dataset>]
                RunConfig fields for the runs of one dataset only, e.g. mean/std preprocessing for the
                CIFAR runs of a table that also has SVHN runs (which keep their ÷255).
[grid]          field -> list of values; the runs take the cartesian product.
[[rows]]        explicit partial configs (default: one empty row). Runs = rows × product(grid), each
                merged as base ← base_by_dataset[dataset] ← grid ← row (the later wins).
[[exclude]]     partial configs; a run matching every key of one entry is dropped (Table 4's WRN-40-8
                on CIFAR-100 is "-"). Each entry must drop at least one run (a typo would drop none).
[table]         how the paper lays the table out:
                  rows     list of config fields (or "label") identifying a paper row;
                  columns  optional config field spread over the columns (e.g. "dataset");
                  metric   the cell metric (one of `metrics`);
                  extra    optional per-row columns (metrics, e.g. ["params", "epoch_time_s"]);
                  baseline optional partial config of the ablation's baseline (e.g. {block="B(3,3)"}).
[[figures]]     kind: "pointplot" (test error by factor, every seed a dot, the paper value a marker),
                "curves" (test error solid on the right axis, training loss dashed on the left, one line
                per network), "timing_bars", "error_vs_params"; optional title, x, hue, panel (a config
                field or "label"), metric (one of `metrics`), and panels = [{title, runs = [partial
                configs]}] when the panels are hand-picked subsets rather than values of one field.
[timing]        kind = "timing" only: batch_size (becomes the runs' batch_size), warmup, repeats.

Partial configs used to *select* runs (exclude, baseline, panels' runs) may also use the key "label"
(`wrn.names.render_label`). Unknown keys anywhere raise an error suggesting the closest known key.

Expansion: `expand(spec, profile, overrides, seeds)` merges recipe defaults ← base ←
base_by_dataset ← grid ← row ← profile.config ← profile.config_by_dataset[dataset] ← overrides,
resolves each run with `wrn.config.resolve` and names it by `experiments.store.run_id`. Excludes apply
to the spec's own configs (before the profile), since they describe the paper's table. Seeds are the
outer loop, so a partly finished sweep already holds one complete table. Two runs with the same run id
are an error, never silently merged: in a spec it is a spec bug, and under an override it means the
override erased the factor the table studies.

Paper numbers (`paper_results`): a tidy CSV with key columns named like RunConfig fields (only those
that identify the run; an empty cell matches any value), an optional `method` column, then `metric`
and `value` (errors in percent). Rows with arch "reference" are other papers' numbers (Table 5's NIN,
Table 8's ResNet-50...), named by `method`, which the suite does not train.

Every error is a `SpecError` whose message is one line naming the file, the field, the value and what
is allowed, so the command line prints it as it is.
"""

from __future__ import annotations

import csv
import itertools
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable

from experiments import tomlfiles
from wrn.config import DATASETS, RECIPES, ConfigError, RunConfig, recipe_family, resolve, suggest

REPO_ROOT = Path(__file__).resolve().parents[1]
SPECS_DIR = REPO_ROOT / "experiments" / "specs"

KINDS = ("train", "timing")
METRICS = ("test_error", "test_loss", "train_error", "train_loss", "params", "flops", "epoch_time_s",
           "time_ms", "top1_error", "top5_error")
FIGURE_KINDS = ("pointplot", "curves", "timing_bars", "error_vs_params")
CONFIG_FIELDS = tuple(f.name for f in fields(RunConfig))
FIELD_ANNOTATIONS = {f.name: f.type for f in fields(RunConfig)}
# `seed` comes from the spec's `seeds` (or --seeds), never from a config layer.
SETTABLE_FIELDS = tuple(name for name in CONFIG_FIELDS if name != "seed")
SELECT_FIELDS = SETTABLE_FIELDS + ("label",)

_TOP_KEYS = ("name", "title", "paper_ref", "description", "kind", "seeds", "metrics", "paper_results",
             "base", "base_by_dataset", "grid", "rows", "exclude", "table", "figures", "timing")
_REQUIRED_TOP_KEYS = ("name", "title", "paper_ref", "description", "kind", "seeds", "metrics", "table")
_TABLE_KEYS = ("rows", "columns", "metric", "extra", "baseline")
_FIGURE_KEYS = ("kind", "title", "x", "hue", "panel", "panels", "metric")
_PANEL_KEYS = ("title", "runs")
_TIMING_KEYS = ("batch_size", "warmup", "repeats")
_CSV_SPECIAL = ("method", "metric", "value")
_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")


class SpecError(ValueError):
    """A spec, profile or override that is not allowed; the message is one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def fail(where: str, field: str, value: Any, allowed: str) -> SpecError:
    """The one message format: 'where: field: value: what is allowed'."""
    return SpecError(f"{where}: {field}: {value!r}: {allowed}")


# --------------------------------------------------------------------------------------------------
# Data classes


@dataclass(frozen=True)
class Panel:
    title: str
    runs: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Figure:
    kind: str
    title: str | None = None
    x: str | None = None
    hue: str | None = None
    panel: str | None = None
    panels: tuple[Panel, ...] = ()
    metric: str | None = None


@dataclass(frozen=True)
class TableLayout:
    rows: tuple[str, ...]
    metric: str
    columns: str | None = None
    extra: tuple[str, ...] = ()
    baseline: dict[str, Any] | None = None


@dataclass(frozen=True)
class Spec:
    """A validated spec. Its mappings are the file's own values; do not mutate them."""

    name: str
    path: Path
    title: str
    paper_ref: str
    description: str
    kind: str
    seeds: tuple[int, ...]
    metrics: tuple[str, ...]
    paper_results: str | None
    base: dict[str, Any]
    base_by_dataset: dict[str, dict[str, Any]]
    grid: dict[str, tuple[Any, ...]]
    rows: tuple[dict[str, Any], ...]
    exclude: tuple[dict[str, Any], ...]
    table: TableLayout
    figures: tuple[Figure, ...]
    timing: dict[str, int] | None

    @property
    def where(self) -> str:
        return display_path(self.path)


@dataclass(frozen=True)
class PlannedRun:
    """One run to execute: its id (hash of the resolved config), the spec's name, the network's paper
    label and the resolved config. `timing` is None for training runs and {batch_size, warmup,
    repeats} for a timing spec's measurements."""

    run_id: str
    spec: str
    label: str
    config: RunConfig
    timing: dict[str, int] | None = None


@dataclass(frozen=True)
class PaperRow:
    """One row of a spec's paper CSV: the key cells that were filled (typed), method, metric, value."""

    keys: dict[str, Any]
    method: str | None
    metric: str
    value: float

    @property
    def is_reference(self) -> bool:
        return self.keys.get("arch") == "reference"


# --------------------------------------------------------------------------------------------------
# Loading


def display_path(path: Path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SPECS_DIR.glob("*.toml"))


def list_specs() -> list[Spec]:
    """Every shipped spec, validated, in name order."""
    return [load_spec(name) for name in shipped_names()]


def load_spec(name_or_path: str | Path) -> Spec:
    """A shipped spec by name ("table_width") or a user's spec by path ("my/spec.toml")."""
    path = tomlfiles.locate(name_or_path, SPECS_DIR, "spec", SpecError)
    where = display_path(path)
    data = tomlfiles.read(path, where, SpecError)
    spec = _build_spec(path, where, data)
    _networks(spec)  # resolves every run, checks excludes, baseline and panels select something
    if spec.paper_results is not None:
        read_paper_results(spec)
    return spec


def _build_spec(path: Path, where: str, data: dict[str, Any]) -> Spec:
    _check_keys(where, "", data, _TOP_KEYS)
    for key in _REQUIRED_TOP_KEYS:
        if key not in data:
            raise fail(where, key, None, "missing: every spec needs " + ", ".join(_REQUIRED_TOP_KEYS))
    for key in ("name", "title", "paper_ref", "description"):
        _expect_str(where, key, data[key])
    name = data["name"]
    if not _NAME_RE.fullmatch(name):
        raise fail(where, "name", name, "expected lower-case letters, digits and _, starting with a letter")
    shipped = path.resolve().parent == SPECS_DIR.resolve()
    if shipped and name != path.stem:
        raise fail(where, "name", name, f"a shipped spec's name must equal its file stem {path.stem!r}")
    if not shipped and name in shipped_names():
        raise fail(where, "name", name, "is a shipped spec's name; give your spec its own name")
    kind = data["kind"]
    if kind not in KINDS:
        raise fail(where, "kind", kind, f"allowed: {', '.join(KINDS)}{suggest(str(kind), KINDS)}")
    seeds = parse_seeds(where, "seeds", data["seeds"])
    metrics = data["metrics"]
    if not isinstance(metrics, list) or not metrics:
        raise fail(where, "metrics", metrics, f"expected a non-empty list of: {', '.join(METRICS)}")
    for i, metric in enumerate(metrics):
        _check_metric(where, f"metrics[{i}]", metric, METRICS)
    paper_results = data.get("paper_results")
    if paper_results is not None:
        _expect_str(where, "paper_results", paper_results)
        if not (REPO_ROOT / paper_results).is_file():
            raise fail(where, "paper_results", paper_results, "no such file (a path relative to the repo root)")

    base = check_partial(where, "base", data.get("base", {}), SETTABLE_FIELDS)
    by_dataset_raw = _expect_table(where, "base_by_dataset", data.get("base_by_dataset", {}))
    base_by_dataset = {}
    for dataset, layer in by_dataset_raw.items():
        if dataset not in DATASETS:
            raise fail(where, "base_by_dataset", dataset, f"allowed datasets: {', '.join(DATASETS)}"
                       f"{suggest(dataset, DATASETS)}")
        base_by_dataset[dataset] = check_partial(where, f"base_by_dataset.{dataset}", layer, SETTABLE_FIELDS)

    grid = {}
    for field, values in _expect_table(where, "grid", data.get("grid", {})).items():
        _check_field_name(where, "grid", field, SETTABLE_FIELDS)
        if not isinstance(values, list) or not values:
            raise fail(where, f"grid.{field}", values, "expected a non-empty list of values")
        for value in values:
            _check_value(where, f"grid.{field}", field, value)
        grid[field] = tuple(values)

    rows = tuple(check_partial(where, f"rows[{i}]", row, SETTABLE_FIELDS)
                 for i, row in enumerate(_expect_list(where, "rows", data.get("rows", [{}])))) or ({},)
    exclude = tuple(check_partial(where, f"exclude[{i}]", entry, SELECT_FIELDS, non_empty=True)
                    for i, entry in enumerate(_expect_list(where, "exclude", data.get("exclude", []))))
    table = _parse_table(where, data["table"], metrics)
    figures = tuple(_parse_figure(where, i, fig, metrics)
                    for i, fig in enumerate(_expect_list(where, "figures", data.get("figures", []))))

    timing = data.get("timing")
    if kind == "timing":
        if timing is None:
            raise fail(where, "timing", None, "a timing spec needs [timing] with batch_size, warmup, repeats")
        timing = parse_timing(where, "timing", timing, required=True)
        for layer_name, layer in [("base", base), *((f"base_by_dataset.{d}", l) for d, l in base_by_dataset.items()),
                                  ("grid", grid), *((f"rows[{i}]", r) for i, r in enumerate(rows))]:
            if "batch_size" in layer:
                raise fail(where, f"{layer_name}.batch_size", layer["batch_size"],
                           "a timing spec sets its batch size in [timing]")
    elif timing is not None:
        raise fail(where, "timing", timing, 'only a spec of kind "timing" has [timing]')

    return Spec(name=name, path=path, title=data["title"], paper_ref=data["paper_ref"],
                description=data["description"], kind=kind, seeds=seeds, metrics=tuple(metrics),
                paper_results=paper_results, base=base, base_by_dataset=base_by_dataset, grid=grid,
                rows=rows, exclude=exclude, table=table, figures=figures, timing=timing)


def _parse_table(where: str, raw: Any, metrics: list[str]) -> TableLayout:
    raw = _expect_table(where, "table", raw)
    _check_keys(where, "table.", raw, _TABLE_KEYS)
    rows = raw.get("rows")
    if not isinstance(rows, list) or not rows:
        raise fail(where, "table.rows", rows, 'expected a non-empty list of config fields or "label"')
    for i, field in enumerate(rows):
        _check_field_name(where, f"table.rows[{i}]", field, SELECT_FIELDS)
    columns = raw.get("columns")
    if columns is not None:
        _check_field_name(where, "table.columns", columns, SELECT_FIELDS)
    if "metric" not in raw:
        raise fail(where, "table.metric", None, f"missing: one of the spec's metrics {metrics}")
    _check_metric(where, "table.metric", raw["metric"], metrics)
    extra = raw.get("extra", [])
    if not isinstance(extra, list):
        raise fail(where, "table.extra", extra, "expected a list of the spec's metrics")
    for i, metric in enumerate(extra):
        _check_metric(where, f"table.extra[{i}]", metric, metrics)
    baseline = raw.get("baseline")
    if baseline is not None:
        baseline = check_partial(where, "table.baseline", baseline, SELECT_FIELDS, non_empty=True)
    return TableLayout(rows=tuple(rows), metric=raw["metric"], columns=columns, extra=tuple(extra),
                       baseline=baseline)


def _parse_figure(where: str, i: int, raw: Any, metrics: list[str]) -> Figure:
    prefix = f"figures[{i}]"
    raw = _expect_table(where, prefix, raw)
    _check_keys(where, prefix + ".", raw, _FIGURE_KEYS)
    kind = raw.get("kind")
    if kind not in FIGURE_KINDS:
        raise fail(where, f"{prefix}.kind", kind, f"allowed: {', '.join(FIGURE_KINDS)}{suggest(str(kind), FIGURE_KINDS)}")
    if "title" in raw:
        _expect_str(where, f"{prefix}.title", raw["title"])
    for key in ("x", "hue", "panel"):
        if key in raw:
            _check_field_name(where, f"{prefix}.{key}", raw[key], SELECT_FIELDS)
    if "metric" in raw:
        _check_metric(where, f"{prefix}.metric", raw["metric"], metrics)
    panels = []
    for j, panel in enumerate(_expect_list(where, f"{prefix}.panels", raw.get("panels", []))):
        ppre = f"{prefix}.panels[{j}]"
        panel = _expect_table(where, ppre, panel)
        _check_keys(where, ppre + ".", panel, _PANEL_KEYS)
        _expect_str(where, f"{ppre}.title", panel.get("title"))
        runs = _expect_list(where, f"{ppre}.runs", panel.get("runs"))
        if not runs:
            raise fail(where, f"{ppre}.runs", runs, "expected a non-empty list of partial configs")
        panels.append(Panel(title=panel["title"], runs=tuple(
            check_partial(where, f"{ppre}.runs[{k}]", run, SELECT_FIELDS, non_empty=True) for k, run in enumerate(runs))))
    if panels and "panel" in raw:
        raise fail(where, f"{prefix}.panels", "...", "give either panel (a field) or panels (lists of runs), not both")
    return Figure(kind=kind, title=raw.get("title"), x=raw.get("x"), hue=raw.get("hue"), panel=raw.get("panel"),
                  panels=tuple(panels), metric=raw.get("metric"))


def parse_timing(where: str, prefix: str, raw: Any, required: bool) -> dict[str, int]:
    """[timing] of a spec (all three keys) or of a profile (warmup/repeats overrides)."""
    raw = _expect_table(where, prefix, raw)
    known = _TIMING_KEYS if required else ("warmup", "repeats")
    _check_keys(where, prefix + ".", raw, known)
    minimum = {"batch_size": 1, "warmup": 0, "repeats": 1}
    for key in known:
        if key not in raw:
            if required:
                raise fail(where, f"{prefix}.{key}", None, f"missing: [timing] needs {', '.join(known)}")
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum[key]:
            raise fail(where, f"{prefix}.{key}", value, f"expected an integer >= {minimum[key]}")
    return dict(raw)


def parse_seeds(where: str, field: str, value: Any) -> tuple[int, ...]:
    """An int n -> (0, ..., n-1); a list -> its distinct non-negative ints."""
    allowed = "expected an integer n >= 1 (seeds 0..n-1) or a non-empty list of distinct integers >= 0"
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise fail(where, field, value, allowed)
        return tuple(range(value))
    if (not isinstance(value, list) or not value or len(set(value)) != len(value)
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in value)):
        raise fail(where, field, value, allowed)
    return tuple(value)


# --------------------------------------------------------------------------------------------------
# Field checks shared with experiments.profiles


def check_partial(where: str, prefix: str, raw: Any, known: tuple[str, ...] = SETTABLE_FIELDS,
                  non_empty: bool = False) -> dict[str, Any]:
    """A partial RunConfig: known field names, each value of the field's type (not yet its range,
    which `resolve` checks once the run's other fields are known)."""
    raw = _expect_table(where, prefix, raw)
    if non_empty and not raw:
        raise fail(where, prefix, raw, "expected at least one config field")
    for field, value in raw.items():
        _check_field_name(where, prefix, field, known)
        _check_value(where, f"{prefix}.{field}", field, value)
    return dict(raw)


def _check_field_name(where: str, prefix: str, field: Any, known: tuple[str, ...]) -> None:
    if field in known:
        return
    if field == "seed":
        raise fail(where, prefix, field, "seeds are set by the top-level `seeds` (or --seeds), not per config")
    hint = suggest(str(field), known) or " (see wrn/config.py RunConfig)"
    raise fail(where, prefix, field, f"unknown config field{hint}")


def _check_keys(where: str, prefix: str, raw: dict[str, Any], known: tuple[str, ...]) -> None:
    for key in raw:
        if key not in known:
            raise fail(where, f"{prefix}{key}", raw[key],
                       f"unknown key{suggest(key, known)}; allowed: {', '.join(known)}")


_TYPE_CHECKS = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "float | bool": (lambda v: isinstance(v, (int, float)), "a probability in [0, 1), or true/false"),
    "tuple[int, ...]": (lambda v: isinstance(v, list) and all(isinstance(m, int) and not isinstance(m, bool)
                                                              for m in v), "a list of integers, e.g. [60, 120, 160]"),
}


def _check_value(where: str, dotted: str, field: str, value: Any) -> None:
    if field == "label":
        if not isinstance(value, str):
            raise fail(where, dotted, value, "expected a network label, e.g. WRN-28-10")
        return
    annotation = str(FIELD_ANNOTATIONS[field]).replace(" | None", "")
    check, what = _TYPE_CHECKS[annotation]  # a KeyError here means RunConfig grew a new type
    if not check(value):
        raise fail(where, dotted, value, f"expected {what}")



def _check_metric(where: str, field: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise fail(where, field, value, f"allowed: {', '.join(allowed)}{suggest(str(value), allowed)}")


def _expect_str(where: str, field: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise fail(where, field, value, "expected a non-empty string")


def _expect_table(where: str, field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(where, field, value, "expected a table (key = value pairs)")
    return value


def _expect_list(where: str, field: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise fail(where, field, value, "expected a list (an array of tables)")
    return value


# --------------------------------------------------------------------------------------------------
# Matching partial configs against runs


def matches(partial: dict[str, Any], config: RunConfig) -> bool:
    """Whether a resolved `config` has every value of `partial` (exclude, baseline, panels, paper rows).

    ``dropout = true/false`` means the paper's rate for the config's dataset / none, as in a spec;
    "label" compares the rendered network label; block spellings ignore spaces."""
    for field, want in partial.items():
        if field == "label":
            from wrn.names import render_label

            have: Any = render_label(config)
        else:
            have = getattr(config, field)
        if field == "dropout" and isinstance(want, bool):
            want = RECIPES[recipe_family(config.dataset)]["paper_dropout"] if want else 0.0
        elif field == "block" and isinstance(want, str) and isinstance(have, str):
            want, have = want.replace(" ", ""), have.replace(" ", "")
        elif isinstance(have, tuple):
            have = list(have)
        if isinstance(want, bool) != isinstance(have, bool) or have != want:
            return False
    return True


# --------------------------------------------------------------------------------------------------
# Expansion


@dataclass(frozen=True)
class _Network:
    """A spec-level config (before profile and overrides) and where each field came from."""

    fields: dict[str, Any]
    sources: dict[str, tuple[str, str]]  # field -> (file, dotted key)
    dataset: str
    position: str  # "rows[2] with grid {...}", for messages


def _merge(layers: Iterable[tuple[str, str, dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    merged: dict[str, Any] = {}
    sources: dict[str, tuple[str, str]] = {}
    for file, prefix, layer in layers:
        for field, value in layer.items():
            merged[field] = value
            sources[field] = (file, f"{prefix}.{field}")
    return merged, sources


def _dataset_of(*layers: dict[str, Any]) -> str:
    for layer in reversed(layers):
        if "dataset" in layer:
            return layer["dataset"]
    return RunConfig.dataset


def _resolve(fields_: dict[str, Any], sources: dict[str, tuple[str, str]], where: str) -> RunConfig:
    try:
        return resolve(RunConfig(**fields_))
    except ConfigError as err:
        file, dotted = sources.get(err.field_name, (where, f"{err.field_name} (recipe default)"))
        raise fail(file, dotted, err.value, err.allowed) from None


def _networks(spec: Spec) -> list[_Network]:
    """The spec's distinct network configs (seed 0, no profile), with excludes applied and checked."""
    where = spec.where
    grid_fields = list(spec.grid)
    out: list[_Network] = []
    resolved: list[RunConfig] = []
    used_excludes: set[int] = set()
    seen: dict[str, str] = {}
    for r, row in enumerate(spec.rows):
        for combo in itertools.product(*(spec.grid[f] for f in grid_fields)):
            grid_layer = dict(zip(grid_fields, combo))
            timing_layer = {"batch_size": spec.timing["batch_size"]} if spec.timing else {}
            dataset = _dataset_of(spec.base, grid_layer, row)
            layers = [(where, "timing", timing_layer), (where, "base", spec.base),
                      (where, f"base_by_dataset.{dataset}", spec.base_by_dataset.get(dataset, {})),
                      (where, "grid", grid_layer), (where, f"rows[{r}]", row)]
            merged, sources = _merge(layers)
            config = _resolve(merged, sources, where)
            hits = [i for i, entry in enumerate(spec.exclude) if matches(entry, config)]
            if hits:
                used_excludes.update(hits)
                continue
            from experiments.store import run_id

            rid = run_id(config)
            position = f"rows[{r}] with grid {grid_layer}" if grid_layer else f"rows[{r}]"
            if rid in seen:
                raise fail(where, "rows", row, f"{position} gives the same run as {seen[rid]}; "
                                               "each run must be listed once")
            seen[rid] = position
            out.append(_Network(fields=merged, sources=sources, dataset=dataset, position=position))
            resolved.append(config)
    for i, entry in enumerate(spec.exclude):
        if i not in used_excludes:
            raise fail(where, f"exclude[{i}]", entry, "matches no run of the spec (a typo?)")
    if not out:
        raise fail(where, "exclude", list(spec.exclude), "drops every run; a spec needs at least one")
    selections = [("table.baseline", spec.table.baseline)] if spec.table.baseline else []
    for i, fig in enumerate(spec.figures):
        for j, panel in enumerate(fig.panels):
            selections += [(f"figures[{i}].panels[{j}].runs[{k}]", run) for k, run in enumerate(panel.runs)]
    for field, selection in selections:
        if not any(matches(selection, c) for c in resolved):
            raise fail(where, field, selection, "matches no run of the spec")
    return out


def expand(spec: Spec, profile: Any = "paper", overrides: dict[str, Any] | None = None,
           seeds: int | None = None) -> list[PlannedRun]:
    """The runs of `spec` under `profile` (a `Profile` or a profile name), in run order.

    `overrides` are `parse_overrides` output (the CLI's --set), applied last. `seeds` (n: seeds
    0..n-1) replaces the profile's and the spec's seeds."""
    from experiments.profiles import Profile, load_profile
    from experiments.store import run_id
    from wrn.names import render_label

    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    overrides = dict(overrides or {})
    for field, value in overrides.items():
        _check_field_name("--set", "key", field, SETTABLE_FIELDS)
        _check_value("--set", field, field, value)
    if seeds is not None:
        seed_list = parse_seeds("--seeds", "seeds", seeds)
    elif profile.seeds is not None:
        seed_list = tuple(range(profile.seeds))
    else:
        seed_list = spec.seeds
    timing = None
    if spec.kind == "timing":
        timing = {**spec.timing, **profile.timing}
    profile_file = display_path(profile.path)
    planned: list[tuple[dict[str, Any], dict[str, tuple[str, str]], str]] = []
    for net in _networks(spec):
        merged, sources = _merge([
            (profile_file, f"{profile.name}.data", _data_source(profile)),
            (profile_file, f"{profile.name}.config", profile.config),
            (profile_file, f"{profile.name}.config_by_dataset.{net.dataset}",
             profile.config_by_dataset.get(net.dataset, {})),
            ("--set", "", overrides),
        ])
        sources = {f: (file, dotted.lstrip(".")) for f, (file, dotted) in sources.items()}
        planned.append(({**net.fields, **merged}, {**net.sources, **sources}, net.position))
    runs: list[PlannedRun] = []
    seen: dict[str, str] = {}
    for seed in seed_list:
        for fields_, sources, position in planned:
            config = _resolve({**fields_, "seed": seed}, sources, spec.where)
            rid = run_id(config)
            label = render_label(config)
            if rid in seen:
                raise SpecError(f"{spec.where}: {seen[rid]} and {position} become the same run {label} (seed "
                                f"{seed}, run id {rid}) under profile {profile.name!r} and --set {overrides}: "
                                "allowed: overrides that keep the spec's runs distinct")
            seen[rid] = position
            runs.append(PlannedRun(run_id=rid, spec=spec.name, label=label, config=config,
                                   timing=None if timing is None else {**timing, "batch_size": config.batch_size}))
    return runs


def _data_source(profile) -> dict[str, Any]:
    """A profile's `data` table as the run-config field that makes it part of each run's identity."""
    data = profile.data or {}
    if not data.get("synthetic"):
        return {}
    return {"data_source": f"synthetic:{data['train_images']}:{data['test_images']}"}


# --------------------------------------------------------------------------------------------------
# Overrides (--set key=value)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """The CLI's ``--set key=value`` list as a partial config.

    Values are TOML literals (2, 0.3, true, [60, 120]); anything that is not one is a string, so
    ``block=B(1,3,1)`` and ``dataset=cifar100`` need no quotes. Ranges are checked when the runs are
    resolved, where the message names the override."""
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise fail("--set", "item", item, "expected key=value, e.g. epochs=2 or lr_milestones=[60,120]")
        key, text = (part.strip() for part in item.split("=", 1))
        _check_field_name("--set", "key", key, SETTABLE_FIELDS)
        if key in out:
            raise fail("--set", key, text, "given twice; give each field once")
        value = _toml_literal(text)
        _check_value("--set", key, key, value)
        out[key] = value
    return out


def _toml_literal(text: str) -> Any:
    try:
        parsed = tomllib.loads(f"value = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return parsed["value"] if list(parsed) == ["value"] else text


# --------------------------------------------------------------------------------------------------
# Paper numbers


def read_paper_results(spec: Spec) -> list[PaperRow]:
    """The spec's paper CSV as typed rows; checks its columns and metrics."""
    if spec.paper_results is None:
        return []
    path = REPO_ROOT / spec.paper_results
    where = display_path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        if header[-2:] != ["metric", "value"]:
            raise fail(where, "header", header, "expected key columns, then metric, value")
        for column in header[:-2]:
            if column != "method":
                _check_field_name(where, "header", column, SETTABLE_FIELDS)
        out = []
        for line, row in enumerate(reader, start=2):
            _check_metric(where, f"line {line}: metric", row["metric"], spec.metrics)
            try:
                value = float(row["value"])
            except (TypeError, ValueError):
                raise fail(where, f"line {line}: value", row["value"], "expected a number") from None
            keys = {c: _csv_cell(row[c]) for c in header[:-2] if c != "method" and row[c] not in ("", None)}
            method = row.get("method") or None
            if keys.get("arch") == "reference" and not method:
                raise fail(where, f"line {line}: method", method, "a reference row names its method")
            out.append(PaperRow(keys=keys, method=method, metric=row["metric"], value=value))
    return out


def _csv_cell(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text.strip()

