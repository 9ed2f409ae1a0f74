"""Experiment specs: one TOML file per paper table or figure, loaded and validated.

A spec is data, not code, so that what a table trains can be read, diffed and checked without running
anything. This module knows the spec schema and the spec's own networks; `experiments.plan` turns a
spec into runs under a profile.

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
  paper_results optional str: path (relative to the repo root) of the tidy CSV of the paper's numbers
                (format: `analysis.paper`); every shipped spec has one, `results/paper/<name>.csv`.
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
                  rows     list of config fields (or "label") identifying a paper row; or ["deviation"]
                           for an ablation whose rows each change one setting of the baseline: each
                           row is then named by what it changes (`analysis.deviations`);
                  columns  optional config field spread over the columns (e.g. "dataset");
                  metric   the cell metric (one of `metrics`);
                  extra    optional per-row columns (metrics, e.g. ["params", "epoch_time_s"]);
                  baseline optional partial config of the ablation's baseline (e.g. {block="B(3,3)"});
                  best_epoch_row  optional bool (needs a baseline and metric test_error): a row more,
                           the baseline runs' best test epoch instead of their final one (what
                           reporting the best epoch would publish), compared like any deviation.
[[figures]]     kind: "pointplot" (test error by factor, every seed a dot, the paper value a marker),
                "curves" (test error solid on the right axis, training loss dashed on the left, one line
                per network), "timing_bars", "error_vs_params", "differences" (each comparison with the baseline
                and its interval; needs a table.baseline); optional title, x, hue, panel (a config
                field or "label"), metric (one of `metrics`), and panels = [{title, runs = [partial
                configs]}] when the panels are hand-picked subsets rather than values of one field.
[timing]        kind = "timing" only: batch_size (becomes the runs' batch_size), warmup, repeats.

Partial configs used to *select* runs (exclude, baseline, panels' runs) may also use the key "label"
(`wrn.names.render_label`). Unknown keys anywhere raise an error suggesting the closest known key.

A spec's *networks* are its configs before any profile: recipe defaults ← base ← base_by_dataset ←
grid ← row, resolved by `wrn.config.resolve`, with excludes applied. Loading checks them all, so a
spec that loads has no out-of-range value, no two identical networks, and no exclude, baseline or
panel that selects nothing. Every error is a `SpecError` whose message is one line naming the file,
the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.schema import (REPO_ROOT, SELECT_FIELDS, SETTABLE_FIELDS, check_choice,
                                check_field_name, check_keys, check_partial, check_value, display_path,
                                expect_list, expect_str, expect_table, fail, locate, parse_seeds, parse_timing,
                                read_toml)
from wrn.config import DATASETS, RunConfig, resolve
from wrn.errors import ConfigError
from wrn.names import render_label
from wrn.recipes import paper_dropout
from wrn.records import KINDS

SPECS_DIR = REPO_ROOT / "experiments" / "specs"

# What a spec may report: the numbers of a run's result (wrn.results.RunResult) that the analysis
# tables; ImageNet reports its test error as top-1 and top-5.
METRICS = ("test_error", "test_loss", "train_error", "train_loss", "params", "flops", "epoch_time_s",
           "time_ms", "top1_error", "top5_error")
FIGURE_KINDS = ("pointplot", "curves", "timing_bars", "error_vs_params", "differences")

_TOP_KEYS = ("name", "title", "paper_ref", "description", "kind", "seeds", "metrics", "paper_results",
             "base", "base_by_dataset", "grid", "rows", "exclude", "table", "figures", "timing")
_REQUIRED_TOP_KEYS = ("name", "title", "paper_ref", "description", "kind", "seeds", "metrics", "table")
_TABLE_KEYS = ("rows", "columns", "metric", "extra", "baseline", "best_epoch_row")
DEVIATION = "deviation"  # the row key of `[table] rows = ["deviation"]`
_FIGURE_KEYS = ("kind", "title", "x", "hue", "panel", "panels", "metric")
_PANEL_KEYS = ("title", "runs")
_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")

# A config layer: (file, dotted key prefix, fields), merged in order, the later winning.
Layer = tuple[str, str, dict[str, Any]]


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
    best_epoch_row: bool = False


@dataclass(frozen=True)
class Network:
    """One of a spec's configs before profile and overrides, and where each field came from."""

    fields: dict[str, Any]
    sources: dict[str, tuple[str, str]]  # field -> (file, dotted key), for messages
    dataset: str
    position: str  # "rows[2] with grid {...}", for messages


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
    networks: tuple[Network, ...] = ()

    @property
    def where(self) -> str:
        return display_path(self.path)


# --------------------------------------------------------------------------------------------------
# Loading


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SPECS_DIR.glob("*.toml"))


def list_specs() -> list[Spec]:
    """Every shipped spec, validated, in name order."""
    return [load_spec(name) for name in shipped_names()]


def load_spec(name_or_path: str | Path) -> Spec:
    """A shipped spec by name ("table_width") or a user's spec by path ("my/spec.toml")."""
    path = locate(name_or_path, SPECS_DIR, "spec")
    spec = _build_spec(path, display_path(path), read_toml(path))
    return dataclasses.replace(spec, networks=tuple(_networks(spec)))


def _build_spec(path: Path, where: str, data: dict[str, Any]) -> Spec:
    check_keys(where, "", data, _TOP_KEYS)
    for key in _REQUIRED_TOP_KEYS:
        if key not in data:
            raise fail(where, key, None, "missing: every spec needs " + ", ".join(_REQUIRED_TOP_KEYS))
    for key in ("name", "title", "paper_ref", "description"):
        expect_str(where, key, data[key])
    name = data["name"]
    if not _NAME_RE.fullmatch(name):
        raise fail(where, "name", name, "expected lower-case letters, digits and _, starting with a letter")
    shipped = path.resolve().parent == SPECS_DIR.resolve()
    if shipped and name != path.stem:
        raise fail(where, "name", name, f"a shipped spec's name must equal its file stem {path.stem!r}")
    if not shipped and name in shipped_names():
        raise fail(where, "name", name, "is a shipped spec's name; give your spec its own name")
    kind = data["kind"]
    check_choice(where, "kind", kind, KINDS)
    seeds = parse_seeds(where, "seeds", data["seeds"])
    metrics = data["metrics"]
    if not isinstance(metrics, list) or not metrics:
        raise fail(where, "metrics", metrics, f"expected a non-empty list of: {', '.join(METRICS)}")
    for i, metric in enumerate(metrics):
        check_choice(where, f"metrics[{i}]", metric, METRICS)
    paper_results = data.get("paper_results")
    if paper_results is not None:
        expect_str(where, "paper_results", paper_results)
        if not (REPO_ROOT / paper_results).is_file():
            raise fail(where, "paper_results", paper_results, "no such file (a path relative to the repo root)")

    base = check_partial(where, "base", data.get("base", {}))
    base_by_dataset = {}
    for dataset, layer in expect_table(where, "base_by_dataset", data.get("base_by_dataset", {})).items():
        check_choice(where, "base_by_dataset", dataset, DATASETS)
        base_by_dataset[dataset] = check_partial(where, f"base_by_dataset.{dataset}", layer)
    grid = _parse_grid(where, data.get("grid", {}))
    rows = tuple(check_partial(where, f"rows[{i}]", row)
                 for i, row in enumerate(expect_list(where, "rows", data.get("rows", [{}])))) or ({},)
    exclude = tuple(check_partial(where, f"exclude[{i}]", entry, SELECT_FIELDS, non_empty=True)
                    for i, entry in enumerate(expect_list(where, "exclude", data.get("exclude", []))))
    table = _parse_table(where, data["table"], metrics)
    figures = tuple(_parse_figure(where, i, fig, metrics)
                    for i, fig in enumerate(expect_list(where, "figures", data.get("figures", []))))
    for i, fig in enumerate(figures):
        if fig.kind == "differences" and table.baseline is None:
            raise fail(where, f"figures[{i}].kind", fig.kind, "draws the comparisons with a baseline: set table.baseline")
    timing = _parse_timing_section(where, kind, data.get("timing"), base, base_by_dataset, grid, rows)
    return Spec(name=name, path=path, title=data["title"], paper_ref=data["paper_ref"],
                description=data["description"], kind=kind, seeds=seeds, metrics=tuple(metrics),
                paper_results=paper_results, base=base, base_by_dataset=base_by_dataset, grid=grid,
                rows=rows, exclude=exclude, table=table, figures=figures, timing=timing)


def _parse_grid(where: str, raw: Any) -> dict[str, tuple[Any, ...]]:
    grid = {}
    for field, values in expect_table(where, "grid", raw).items():
        check_field_name(where, "grid", field, SETTABLE_FIELDS)
        if not isinstance(values, list) or not values:
            raise fail(where, f"grid.{field}", values, "expected a non-empty list of values")
        for value in values:
            check_value(where, f"grid.{field}", field, value)
        grid[field] = tuple(values)
    return grid


def _parse_timing_section(where: str, kind: str, raw: Any, base, base_by_dataset, grid, rows) -> dict[str, int] | None:
    """[timing] of a timing spec, which alone sets its runs' batch size."""
    if kind != "timing":
        if raw is not None:
            raise fail(where, "timing", raw, 'only a spec of kind "timing" has [timing]')
        return None
    if raw is None:
        raise fail(where, "timing", None, "a timing spec needs [timing] with batch_size, warmup, repeats")
    timing = parse_timing(where, "timing", raw, required=True)
    layers = [("base", base), *((f"base_by_dataset.{d}", layer) for d, layer in base_by_dataset.items()),
              ("grid", grid), *((f"rows[{i}]", row) for i, row in enumerate(rows))]
    for layer_name, layer in layers:
        if "batch_size" in layer:
            raise fail(where, f"{layer_name}.batch_size", layer["batch_size"],
                       "a timing spec sets its batch size in [timing]")
    return timing


def _parse_table(where: str, raw: Any, metrics: list[str]) -> TableLayout:
    raw = expect_table(where, "table", raw)
    check_keys(where, "table.", raw, _TABLE_KEYS)
    rows = raw.get("rows")
    if not isinstance(rows, list) or not rows:
        raise fail(where, "table.rows", rows, 'expected a non-empty list of config fields or "label"')
    for i, field in enumerate(rows):
        check_field_name(where, f"table.rows[{i}]", field, SELECT_FIELDS + (DEVIATION,))
    columns = raw.get("columns")
    if columns is not None:
        check_field_name(where, "table.columns", columns, SELECT_FIELDS)
    if "metric" not in raw:
        raise fail(where, "table.metric", None, f"missing: one of the spec's metrics {metrics}")
    check_choice(where, "table.metric", raw["metric"], tuple(metrics))
    extra = raw.get("extra", [])
    if not isinstance(extra, list):
        raise fail(where, "table.extra", extra, "expected a list of the spec's metrics")
    for i, metric in enumerate(extra):
        check_choice(where, f"table.extra[{i}]", metric, tuple(metrics))
    baseline = raw.get("baseline")
    if baseline is not None:
        baseline = check_partial(where, "table.baseline", baseline, SELECT_FIELDS, non_empty=True)
    if DEVIATION in rows and (rows != [DEVIATION] or baseline is None):
        raise fail(where, "table.rows", rows, 'rows = ["deviation"] stands alone and needs a table.baseline')
    best_epoch_row = raw.get("best_epoch_row", False)
    if not isinstance(best_epoch_row, bool):
        raise fail(where, "table.best_epoch_row", best_epoch_row, "expected true or false")
    if best_epoch_row and (baseline is None or raw["metric"] != "test_error"):
        raise fail(where, "table.best_epoch_row", best_epoch_row, "needs a table.baseline and metric test_error")
    return TableLayout(rows=tuple(rows), metric=raw["metric"], columns=columns, extra=tuple(extra),
                       baseline=baseline, best_epoch_row=best_epoch_row)


def _parse_figure(where: str, i: int, raw: Any, metrics: list[str]) -> Figure:
    prefix = f"figures[{i}]"
    raw = expect_table(where, prefix, raw)
    check_keys(where, prefix + ".", raw, _FIGURE_KEYS)
    kind = raw.get("kind")
    check_choice(where, f"{prefix}.kind", kind, FIGURE_KINDS)
    if "title" in raw:
        expect_str(where, f"{prefix}.title", raw["title"])
    for key in ("x", "hue", "panel"):
        if key in raw:
            check_field_name(where, f"{prefix}.{key}", raw[key], SELECT_FIELDS)
    if "metric" in raw:
        check_choice(where, f"{prefix}.metric", raw["metric"], tuple(metrics))
    panels = []
    for j, panel in enumerate(expect_list(where, f"{prefix}.panels", raw.get("panels", []))):
        ppre = f"{prefix}.panels[{j}]"
        panel = expect_table(where, ppre, panel)
        check_keys(where, ppre + ".", panel, _PANEL_KEYS)
        expect_str(where, f"{ppre}.title", panel.get("title"))
        runs = expect_list(where, f"{ppre}.runs", panel.get("runs"))
        if not runs:
            raise fail(where, f"{ppre}.runs", runs, "expected a non-empty list of partial configs")
        panels.append(Panel(title=panel["title"], runs=tuple(
            check_partial(where, f"{ppre}.runs[{k}]", run, SELECT_FIELDS, non_empty=True) for k, run in enumerate(runs))))
    if panels and "panel" in raw:
        raise fail(where, f"{prefix}.panels", "...", "give either panel (a field) or panels (lists of runs), not both")
    return Figure(kind=kind, title=raw.get("title"), x=raw.get("x"), hue=raw.get("hue"), panel=raw.get("panel"),
                  panels=tuple(panels), metric=raw.get("metric"))


# --------------------------------------------------------------------------------------------------
# Selecting runs with partial configs


def matches(partial: dict[str, Any], config: RunConfig) -> bool:
    """Whether a resolved `config` has every value of `partial` (exclude, baseline, panels, paper rows).

    ``dropout = true/false`` means the paper's rate for the config's dataset / none, as in a spec;
    "label" compares the rendered network label; block spellings ignore spaces."""
    for field, want in partial.items():
        have: Any = render_label(config) if field == "label" else getattr(config, field)
        if field == "dropout" and isinstance(want, bool):
            want = paper_dropout(config.dataset) if want else 0.0
        elif field == "block" and isinstance(want, str) and isinstance(have, str):
            want, have = want.replace(" ", ""), have.replace(" ", "")
        elif isinstance(have, tuple):
            have = list(have)
        if isinstance(want, bool) != isinstance(have, bool) or have != want:
            return False
    return True


# --------------------------------------------------------------------------------------------------
# Merging config layers


def merge_layers(layers: Iterable[Layer]) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """The layers' fields merged in order (the later wins), and where each field's value came from."""
    merged: dict[str, Any] = {}
    sources: dict[str, tuple[str, str]] = {}
    for file, prefix, layer in layers:
        for field, value in layer.items():
            merged[field] = value
            sources[field] = (file, f"{prefix}.{field}".lstrip("."))
    return merged, sources


def resolve_merged(fields_: dict[str, Any], sources: dict[str, tuple[str, str]], where: str) -> RunConfig:
    """`wrn.config.resolve` of merged fields; a bad value is reported at the layer that set it."""
    try:
        return resolve(RunConfig(**fields_))
    except ConfigError as err:
        file, dotted = sources.get(err.field_name, (where, f"{err.field_name} (recipe default)"))
        raise fail(file, dotted, err.value, err.allowed) from None


def _dataset_of(*layers: dict[str, Any]) -> str:
    for layer in reversed(layers):
        if "dataset" in layer:
            return layer["dataset"]
    return RunConfig.dataset


def _networks(spec: Spec) -> list[Network]:
    """The spec's distinct network configs (seed 0, no profile), with excludes applied and checked."""
    where = spec.where
    grid_fields = list(spec.grid)
    out: list[Network] = []
    resolved: list[RunConfig] = []
    used_excludes: set[int] = set()
    seen: dict[RunConfig, str] = {}
    timing_layer = {"batch_size": spec.timing["batch_size"]} if spec.timing else {}
    for r, row in enumerate(spec.rows):
        for combo in itertools.product(*(spec.grid[f] for f in grid_fields)):
            grid_layer = dict(zip(grid_fields, combo))
            dataset = _dataset_of(spec.base, grid_layer, row)
            merged, sources = merge_layers([
                (where, "timing", timing_layer), (where, "base", spec.base),
                (where, f"base_by_dataset.{dataset}", spec.base_by_dataset.get(dataset, {})),
                (where, "grid", grid_layer), (where, f"rows[{r}]", row)])
            config = resolve_merged(merged, sources, where)
            hits = [i for i, entry in enumerate(spec.exclude) if matches(entry, config)]
            if hits:
                used_excludes.update(hits)
                continue
            position = f"rows[{r}] with grid {grid_layer}" if grid_layer else f"rows[{r}]"
            if config in seen:
                raise fail(where, "rows", row, f"{position} gives the same run as {seen[config]}; "
                                               "each run must be listed once")
            seen[config] = position
            out.append(Network(fields=merged, sources=sources, dataset=dataset, position=position))
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


# Fields that set runs of one network apart rather than networks apart: not a cell's.
NOT_KEY_FIELDS = ("seed",)


def column_value(config: RunConfig, column_field: str) -> Any:
    """A config's value of a table's column field: a config field, or "label", the network's name."""
    return render_label(config) if column_field == "label" else getattr(config, column_field)


def baseline_pairs(configs: dict[int, RunConfig], baseline: dict[str, Any], column_field: str | None
                   ) -> list[tuple[int, int]]:
    """(variant, baseline) keys of `configs` (networks, seed aside): each network that the `baseline`
    selection does not match, with the baseline network of its column that differs from it in the
    fewest fields (the no-dropout network of the same depth and width for a dropout variant, the single
    B(3,3) network for every block type)."""
    is_base = {key: matches(baseline, cfg) for key, cfg in configs.items()}
    pairs = []
    for key, cfg in configs.items():
        if is_base[key]:
            continue
        bases = [b for b in configs if is_base[b]
                 and (not column_field or column_value(configs[b], column_field) == column_value(cfg, column_field))]
        if bases:
            mine = cfg.to_dict()
            shared = lambda b: sum(mine[f] == v for f, v in configs[b].to_dict().items() if f not in NOT_KEY_FIELDS)  # noqa: E731
            pairs.append((key, max(bases, key=shared)))
    return pairs
