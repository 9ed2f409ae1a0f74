import math
import re

import numpy as np
import pandas as pd
import pytest
from fabricate import write_run

from analysis import stats
from analysis.collect import collect_spec
from experiments.sequential import SequentialDesign
from analysis.tables import (LATEX_TEXT_WIDTH_PT, build_table, csv_rounding, latex_frames, latex_size, layout_frame,
                             to_latex, to_markdown, write_tables)
from experiments.plan import expand
from experiments.spec import list_specs, load_spec

BASE = dict(dataset="cifar10", k=2, preprocessing="zca", recipe="v1-2016-05", bn_init="ones")  # Table 2's era


def _block_type_table(tmp_path):
    """Table 2 with B(3,3) 5 seeds near the paper, B(1,3,1) 5 seeds far above it plus one diverged,
    B(3,1) 2 seeds, the other three networks not run."""
    spec = load_spec("table_block_type")
    for seed, err in enumerate([5.9, 5.5, 5.7, 5.6, 5.8]):
        write_run(tmp_path, spec.name, dict(BASE, depth=28, block="B(3,3)", seed=seed), test_error=err,
                  params=1_467_610, epoch_time_s=60.0 + seed)
    for seed, err in enumerate([7.0, 7.1, 7.2, 7.3, 7.4]):
        write_run(tmp_path, spec.name, dict(BASE, depth=40, block="B(1,3,1)", seed=seed), test_error=err,
                  params=1_429_082)
    write_run(tmp_path, spec.name, dict(BASE, depth=40, block="B(1,3,1)", seed=5), state="diverged")
    for seed in (0, 1):
        write_run(tmp_path, spec.name, dict(BASE, depth=40, block="B(3,1)", seed=seed), test_error=5.8)
    return spec, build_table(spec, collect_spec(spec, tmp_path))


def _cell(table, block):
    return table.cells[table.cells["block"] == block].iloc[0]


def test_cells_have_median_n_interval_delta_and_verdict(tmp_path):
    _, table = _block_type_table(tmp_path)
    base = _cell(table, "B(3,3)")
    assert (base["n"], base["median"], base["min"], base["max"]) == (5, 5.7, 5.5, 5.9)
    assert base["paper"] == 5.73 and base["paper_runs"] == 5 and base["delta"] == pytest.approx(-0.03)
    assert base["verdict_vs_paper"] == stats.EQUIVALENT  # 5 runs 0.03 from the paper, σ 0.3 pooled
    assert base["params"] == 1_467_610 and base["paper_params"] == 1_500_000
    assert base["epoch_time_s"] == 62.0 and base["paper_epoch_time_s"] == 67.5
    assert (base["ci_low"], base["ci_high"], base["coverage"]) == stats.median_interval([5.9, 5.5, 5.7, 5.6, 5.8])
    # σ pooled over the three run cells: 4 + 4 + 1 degrees of freedom
    assert (base["sigma_source"], base["sigma_df"]) == ("pooled", 9)
    wide = _cell(table, "B(1,3,1)")
    assert wide["n"] == 5 and wide["median"] == 7.2 and wide["verdict_vs_paper"] == stats.HIGHER
    assert wide["p_adjusted"] < 0.05 and wide["p_adjusted"] >= wide["p_value"]
    assert wide["notes"] == "1 diverged"  # listed, never in the median
    short = _cell(table, "B(3,1)")  # 2 runs 0.02 from the paper, but σ is pooled: tested
    assert short["verdict_vs_paper"] == stats.EQUIVALENT and short["detectable"] > abs(short["delta"])
    assert short["alpha"] == pytest.approx(0.05 / 3)  # Holm over the three tested cells: a lone departure's level
    assert _cell(table, "B(1,3)")["verdict_vs_paper"] == stats.TOO_FEW  # not run


def test_table_has_the_papers_rows_in_the_papers_order(tmp_path):
    _, table = _block_type_table(tmp_path)
    assert list(table.cells["block"]) == ["B(1,3,1)", "B(3,1)", "B(1,3)", "B(3,1,1)", "B(3,3)", "B(3,1,3)"]
    not_run = _cell(table, "B(1,3)")
    assert not_run["n"] == 0 and not_run["paper"] == 6.42 and not_run["label"] == "WRN-40-2-B(1,3)"
    layout = layout_frame(table)
    assert list(layout["depth"]) == ["40", "40", "40", "40", "28", "22"]
    assert layout.loc[4, "ours"] == "5.70 [5.50, 5.90] (94%) n=5"
    assert layout.loc[0, "vs paper"] == "HIGHER" and layout.loc[4, "vs paper"] == "equivalent (within ±0.5 pp)"
    assert layout.loc[2, "vs paper"] == "too few (no run)"
    assert layout.loc[4, "# params (ours)"] == "1,467,610" and layout.loc[4, "# params (paper)"] == "1.5M"


def test_a_cell_the_runs_cannot_tell_says_what_they_could_have_seen(tmp_path):
    """Noisy runs near the paper: neither a flag nor equivalence; the verdict says which departure the
    test would have flagged with 80 % power, and the seed noise is named beside the table."""
    spec = load_spec("table_block_type")
    for seed, err in enumerate([5.0, 6.6, 5.8]):
        write_run(tmp_path, spec.name, dict(BASE, depth=28, block="B(3,3)", seed=seed), test_error=err)
    table = build_table(spec, collect_spec(spec, tmp_path))
    base = _cell(table, "B(3,3)")
    assert base["verdict_vs_paper"] == stats.INDISTINGUISHABLE and base["detectable"] > 1.0
    text = layout_frame(table).loc[4, "vs paper"]
    assert re.fullmatch(r"indistinguishable \(could detect ≥ \d\.\d\d pp\)", text)
    assert f"{base['detectable']:.2f}" in text
    assert "σ = 0.800 pp, pooled over the cells' runs (2 degrees of freedom)" in to_markdown(table)


def test_one_seed_per_cell_gives_no_verdict_and_says_why(tmp_path):
    spec = load_spec("table_block_type")
    for planned in expand(spec, "paper", seeds=1):
        write_run(tmp_path, spec.name, planned.config, test_error=9.0)
    table = build_table(spec, collect_spec(spec, tmp_path))
    assert set(table.cells["verdict_vs_paper"]) == {stats.TOO_FEW}
    markdown = to_markdown(table)
    assert "too few (σ from 0 of 2 degrees of freedom)" in markdown and "HIGHER" not in markdown
    assert "too few runs to estimate σ (0 pooled degrees of freedom, 2 needed" in markdown
    assert set(table.comparisons["verdict"]) == {stats.TOO_FEW}


def test_every_variant_is_compared_with_the_papers_baseline(tmp_path):
    _, table = _block_type_table(tmp_path)
    comps = table.comparisons.set_index("block")
    assert set(comps.index) == {"B(1,3,1)", "B(3,1)"}  # the run variants
    row = comps.loc["B(1,3,1)"]
    assert row["baseline"] == "WRN-28-2" and row["diff"] == pytest.approx(1.5)  # seeds 0-4 paired
    assert row["paired"] and (row["n"], row["n_baseline"]) == (5, 5)
    assert row["paper_diff"] == pytest.approx(6.06 - 5.73)
    assert row["ci_low"] > 0 and row["p_value"] < row["alpha"] == 0.05 and row["verdict"] == stats.SUPPORTED
    assert row["p_improvement"] == 0.0  # B(1,3,1)'s error is above the baseline's at every seed
    short = comps.loc["B(3,1)"]
    assert short["verdict"] == stats.UNRESOLVED and short["n"] == 2 and short["detectable"] > 0
    assert short["seeds_needed"] == stats.seeds_needed(0.05, short["difference_sd"]) > 2
    assert math.isnan(short["p_improvement"])  # 2 seeds: fewer than P(better) needs
    assert any(s.startswith("WRN-40-2-B(3,1) vs WRN-28-2: the paper's +0.05 pp needs ~") and "with 2 it is "
               "underpowered" in s and "could detect ≥" in s for s in table.sentences)


def test_dropout_variants_compare_with_their_own_network_per_dataset(tmp_path):
    spec = load_spec("table_dropout")
    for dataset in ("cifar10", "svhn"):
        pre = {"preprocessing": "meanstd"} if dataset == "cifar10" else {"recipe": "v1-2016-05"}  # SVHN's era
        for depth, k in ((16, 4), (52, 1)):
            for dropout in (False, True):
                for seed in range(3):
                    write_run(tmp_path, spec.name, dict(dataset=dataset, depth=depth, k=k, dropout=dropout, seed=seed, **pre),
                              test_error=(6.0 if dropout else 5.0) + 0.1 * seed + 0.01 * ((seed + dropout) % 3 - 1))
    table = build_table(spec, collect_spec(spec, tmp_path))
    comps = table.comparisons
    assert len(comps) == 4
    assert set(zip(comps["label"], comps["baseline"], strict=True)) == {
        ("WRN-16-4-dropout", "WRN-16-4"), ("WRN-52-1-dropout", "WRN-52-1")}
    svhn = comps[(comps["dataset"] == "svhn") & (comps["label"] == "WRN-16-4-dropout")].iloc[0]
    assert svhn["diff"] == pytest.approx(1.0) and svhn["paper_diff"] == pytest.approx(1.64 - 1.85)
    assert svhn["verdict"] == stats.CONTRADICTED
    layout = layout_frame(table)
    # one paper row per network whatever the dataset's dropout rate (0.3 CIFAR, 0.4 SVHN)
    assert list(layout["network"][:2]) == ["WRN-16-4", "WRN-16-4-dropout"]
    assert [c for c in layout.columns if c.endswith(" ours")] == ["CIFAR-10 ours", "CIFAR-100 ours", "SVHN ours"]


def test_reference_rows_of_other_methods_are_shown(tmp_path):
    spec = load_spec("table_comparison")
    write_run(tmp_path, spec.name, dict(dataset="cifar10", depth=28, k=10, preprocessing="meanstd"), test_error=4.1)
    table = build_table(spec, collect_spec(spec, tmp_path))
    nin = table.cells[table.cells["label"] == "NIN [20]"]
    assert sorted(nin["paper"]) == [8.81, 35.67] and (nin["n"] == 0).all()
    wrn = table.cells[(table.cells["label"] == "WRN-28-10") & (table.cells["dataset"] == "cifar10")].iloc[0]
    assert wrn["median"] == 4.1 and wrn["delta"] == pytest.approx(0.1)
    assert "NIN [20]" in to_markdown(table)


def test_written_files_and_escaped_latex(tmp_path):
    _, table = _block_type_table(tmp_path)
    written = write_tables(table, tmp_path / "tables", "table_block_type")
    assert [p.name for p in written] == ["table_block_type.md", "table_block_type.tex", "table_block_type.csv",
                                         "table_block_type.vs_baseline.csv"]
    tex = (tmp_path / "tables" / "table_block_type.tex").read_text()
    assert r"\begin{tabular}" in tex and "params" in tex and r"$\Delta$" in tex
    header = next(line for line in tex.splitlines() if line.startswith("depth &"))
    assert "vs paper" not in header  # the paper's layout; the verdicts are optional
    assert "vs paper" in next(line for line in to_latex(table, verdicts=True).splitlines() if line.startswith("depth &"))
    md = (tmp_path / "tables" / "table_block_type.md").read_text()
    assert "| 28 | B(3,3) |" in md and "Against the paper's baseline" in md
    assert "What the seeds run so far can decide" in md and "- WRN-40-2-B(1,3,1) vs WRN-28-2: the paper's" in md


def test_no_finished_runs_still_gives_the_papers_table(tmp_path):
    spec = load_spec("table_deepening")
    write_run(tmp_path, spec.name, dict(dataset="cifar10", depth=40, k=2, block="B(3,3)", depth_convention="true",
                                        preprocessing="zca", recipe="v1-2016-05", bn_init="ones"), state="failed")
    table = build_table(spec, collect_spec(spec, tmp_path))
    assert table.finished_runs == 0 and len(table.cells) == 4
    assert table.cells["paper"].notna().all() and table.cells["median"].isna().all()
    assert "1 failed" in list(table.cells["notes"])
    assert "No finished runs yet" in to_markdown(table)
    assert table.comparisons.empty
    to_latex(table)
    assert math.isnan(table.cells["delta"].iat[0])


def test_epoch_times_say_where_they_were_measured_and_compare_as_ratios_to_the_baseline(tmp_path):
    """A time per epoch depends on the device and the epoch's size: the note beside the table says both
    (never a column head, which would run a printed table off the page), and each row's time is also
    a ratio to B(3,3)'s, next to the paper's ratio (the comparable quantity)."""
    _, table = _block_type_table(tmp_path)
    layout = layout_frame(table)
    assert "time per epoch (s) (ours)" in layout.columns
    assert "Our times per epoch: cpu, 49,920 images per epoch; the paper's: its GPU." in to_markdown(table)
    assert list(layout["÷ WRN-28-2 (ours)"]) == ["0.97×", "0.97×", "", "", "1.00×", ""]  # 60 s / 62 s
    assert list(layout["÷ WRN-28-2 (paper)"]) == ["1.27×", "1.00×", "1.07×", "1.22×", "1.00×", "0.89×"]  # 85.8 / 67.5


def test_a_profiles_minibatch_is_stated_and_not_compared_with_the_papers_timing(tmp_path):
    """The smoke profile times minibatches of 16; the paper's times are of 32: the table says 16 and
    draws no comparison."""
    spec = load_spec("figure_timing")
    for planned in expand(spec, "smoke"):
        write_run(tmp_path, spec.name, planned.config, timing={"ms_median": 30.0}, profile="smoke")
    table = build_table(spec, collect_spec(spec, tmp_path, "smoke"))
    assert table.metric_label == "time per minibatch of 16 (ms)"
    timed = table.cells[table.cells["n"] > 0]
    assert len(timed) == 5 and timed["paper"].isna().all()
    assert all("minibatch of 16, the paper's 32: not compared" in note for note in timed["notes"])
    assert "Measured here at minibatches of 16, not the paper's 32: not compared with its times." in to_markdown(table)


def _comparison_runs(tmp_path):
    """Table 5 with 2 seeds of ResNet-164 on CIFAR-10 under both its recipes (he-2016, whose number the
    paper quotes, and the WRN code's of May 2016) and of WRN-28-10."""
    spec = load_spec("table_comparison")
    for planned in expand(spec, "paper", seeds=2):
        cfg = planned.config
        if cfg.dataset == "cifar10" and cfg.depth in (164, 28):
            write_run(tmp_path, spec.name, cfg, test_error=5.5 + cfg.seed * 0.1)
    return spec, build_table(spec, collect_spec(spec, tmp_path))


def _resnet_164(table, recipe):
    cells = table.cells
    return cells[(cells["label"] == "preact-ResNet-164") & (cells["dataset"] == "cifar10") & (cells["recipe"] == recipe)].iloc[0]


def test_he_et_als_numbers_are_compared_only_with_runs_of_their_recipe(tmp_path):
    _, table = _comparison_runs(tmp_path)
    resnet = _resnet_164(table, "he-2016")
    assert resnet["paper_recipe"] == "he-2016" and resnet["n"] == 2
    assert resnet["verdict_vs_paper"] in (stats.EQUIVALENT, stats.INDISTINGUISHABLE)  # tested: its own recipe
    layout = layout_frame(table)
    assert "recipe" in layout.columns and set(layout["recipe"]) >= {"he-2016", "official-current", "v1-2016-05"}
    assert not {"pad mode", "conv init", "batch size"} & set(layout.columns)  # the recipe implies them
    assert ("recipes he-2016 (preact-ResNet-164), official-current (WRN-28-10), v1-2016-05 (preact-ResNet-164)"
            in table.description)


def test_a_pre_act_resnet_of_another_recipe_is_not_compared_with_he_et_als_number(tmp_path):
    _, table = _comparison_runs(tmp_path)
    resnet = _resnet_164(table, "v1-2016-05")
    assert resnet["n"] == 2 and resnet["paper"] == 5.46 and resnet["verdict_vs_paper"] == stats.NOT_COMPARABLE
    assert math.isnan(resnet["delta"]) and math.isnan(resnet["p_value"])
    wrn = table.cells[(table.cells["label"] == "WRN-28-10") & (table.cells["dataset"] == "cifar10")].iloc[0]
    assert wrn["verdict_vs_paper"] != stats.NOT_COMPARABLE and math.isfinite(wrn["delta"])
    assert "not comparable" in to_markdown(table)


def test_runs_of_one_network_in_two_precisions_are_two_cells(tmp_path):
    """A config with precision "auto" trained on a GPU (bf16) and on a CPU (fp32): two experiments."""
    spec = load_spec("table_block_type")
    for seed, precision in enumerate(["bf16", "bf16", "fp32", "fp32"]):
        write_run(tmp_path, spec.name, dict(BASE, depth=28, block="B(3,3)", seed=seed, precision="auto"),
                  test_error=5.0 + seed, precision=precision)
    collection = collect_spec(spec, tmp_path, overrides={"precision": "auto"})
    table = build_table(spec, collection)
    cells = table.cells[table.cells["n"] > 0]
    assert sorted(zip(cells["runtime_precision"], cells["n"], cells["median"])) == [("bf16", 2, 5.5), ("fp32", 2, 7.5)]
    assert "runtime_precision" in table.row_fields and "each precision has its own cell" in to_markdown(table)


def test_latex_tables_are_captioned_booktabs_floats_with_numbers_right_aligned(tmp_path):
    _, table = _block_type_table(tmp_path)
    tex = to_latex(table)
    assert tex.count(r"\toprule") == tex.count(r"\midrule") == tex.count(r"\bottomrule") == 2
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 2
    assert r"\label{tab:table-block-type}" in tex and r"\label{tab:table-block-type-vs-baseline}" in tex
    captions = [line for line in tex.splitlines() if line.startswith(r"\caption{")]
    assert captions[0].startswith(r"\caption{Table 2: type of convolutions in a block. Ours: median test error (\%) over "
                                  "finished runs")
    assert "Our times per epoch: cpu, 49,920 images per epoch" in captions[0]  # in the caption, not a column head
    assert "94\\% at n=5" in captions[0] and "HIGHER" not in captions[0]  # no verdict column, no legend of one
    assert captions[1].startswith(r"\caption{Table 2: type of convolutions in a block: each variant against its "
                                  r"baseline (baseline WRN-28-2, $\alpha$ = 0.05). $\Delta$ = variant $-$ baseline")
    assert all("Runs: profile paper (the real data), on cpu: cpu, fp32" in c for c in captions)
    lines = tex.splitlines()
    aligns = [re.fullmatch(r"\\begin\{tabular\}\{(\w+)\}", line).group(1) for line in lines if line.startswith(r"\begin{tabular}")]
    headers = [lines[i + 1].removesuffix(r" \\").split(" & ") for i, line in enumerate(lines) if line == r"\toprule"]
    layout, comps = (dict(zip(h, a, strict=True)) for h, a in zip(headers, aligns, strict=True))
    assert {c: layout[c] for c in ("depth", "block type", "params", "s/epoch", r"$\div$ base", "ours", "paper")} == {
        "depth": "r", "block type": "l", "params": "r", "s/epoch": "r", r"$\div$ base": "r", "ours": "r", "paper": "r"}
    assert {c: comps[c] for c in ("network", "seeds", r"$\Delta$ [CI]", r"paper $\Delta$", "ordering",
                                  r"detects $\geq$", "needed", "P(better)")} == {
        "network": "l", "seeds": "r", r"$\Delta$ [CI]": "r", r"paper $\Delta$": "r", "ordering": "l",
        r"detects $\geq$": "r", "needed": "r", "P(better)": "r"}
    body = [line for line in lines if line.endswith(r" \\") and not line.startswith(("depth", "network"))]
    assert any(" & 5.70 [5.50, 5.90] & 5.73" in line for line in body)  # compact: n=5 is the caption's
    assert any("7.20 [7.00, 7.40] & 6.06" in line for line in body)
    assert not [line for line in body if re.search(r"(^|[ \[])-\d", line)]  # never a hyphen for a minus


@pytest.mark.parametrize("name", [s.name for s in list_specs()])
def test_every_printed_table_fits_a_page(tmp_path, name):
    """The width rule: each LaTeX table of a shipped spec, with 3 seeds of every run and a paper row for
    each cell, fits 6.5 in at the size it is set in (device and images per epoch in the caption, short
    heads)."""
    spec = load_spec(name)
    for planned in expand(spec, "paper", seeds=3):
        timing = {"ms_median": 50.0} if spec.kind == "timing" else None
        write_run(tmp_path, spec.name, planned.config, test_error=5.0 + 0.2 * planned.config.seed, timing=timing,
                  device_name="NVIDIA H100 80GB HBM3")
    table = build_table(spec, collect_spec(spec, tmp_path))
    layout, comps = latex_frames(table)
    for frame in (layout, comps):
        if not frame.empty:
            size, width = latex_size(frame)
            assert width <= LATEX_TEXT_WIDTH_PT, (size, width, list(frame.columns))
    tex = to_latex(table)
    assert "H100" not in "".join(line for line in tex.splitlines() if " & " in line)  # never a column head


def _floats(frame: pd.DataFrame):
    """(column, text) of every cell of a CSV read as text that is a number with a decimal point."""
    return [(c, v) for c in frame.columns for v in frame[c] if re.fullmatch(r"-?\d+\.\d+(e-?\d+)?", v)]


def test_csv_numbers_are_rounded_by_their_kind(tmp_path):
    """No float noise in a CSV (6.06 - 5.73 is 0.3299999999999992): errors and their differences to 3
    decimals, p-values to 3 significant digits, counts and parameter counts as integers."""
    _, table = _block_type_table(tmp_path)
    write_tables(table, tmp_path / "tables", "table_block_type")
    read = {name: pd.read_csv(tmp_path / "tables" / f"table_block_type{name}", dtype=str, keep_default_na=False)
            for name in (".csv", ".vs_baseline.csv")}
    cells, comps = read[".csv"], read[".vs_baseline.csv"]
    wide = comps.set_index("block").loc["B(1,3,1)"]
    assert wide["paper_diff"] == "0.33" and wide["diff"] == "1.5" and wide["n"] == "5"
    assert float(wide["p_value"]) == float(f"{float(wide['p_value']):.3g}") < 0.05  # 3 significant digits
    base = cells.set_index("block").loc["B(3,3)"]
    assert (base["params"], base["n"], base["median"], base["delta"]) == ("1467610", "5", "5.7", "-0.03")
    floats = [item for frame in read.values() for item in _floats(frame)]
    assert floats and not [v for _, v in floats if float(v) != float(f"{float(v):.6g}")]
    for column, text in floats:
        how, digits = csv_rounding(column)
        if how == "decimals":
            assert len(text.split(".")[1]) <= digits, (column, text)


def test_a_sequential_look_speaks_at_its_level_everywhere(tmp_path):
    """After the first round of an --until-resolved launch (5 seeds of a 5-to-40 design, α = 0.00625):
    the interval, the detectable difference, the seeds needed and every sentence are at 0.00625, and the
    Markdown and CSV say so."""
    spec = load_spec("table_block_type")
    rng = np.random.default_rng(6)
    for planned in expand(spec, "paper", seeds=5):
        write_run(tmp_path, spec.name, planned.config, test_error=5.8 + 0.15 * rng.standard_normal())
    design = SequentialDesign(spec.name, "paper", 5, 40)
    table = build_table(spec, collect_spec(spec, tmp_path), design)
    level = design.levels[0]
    comps = table.comparisons
    assert (comps["alpha"] == level).all()
    for (v, b), ordering in table.orderings.items():
        d = ordering.difference
        assert (d.ci_high - d.ci_low) / 2 == pytest.approx(stats.critical(d.df, level) * d.se)
        assert d.detectable == pytest.approx(stats.detectable(d.se, d.df, level))
        paper_diff = table.cells.at[v, "paper"] - table.cells.at[b, "paper"]
        assert ordering.seeds_needed == stats.seeds_needed(paper_diff, ordering.difference_sd, level)
    assert all("α = 0.00625" in s or "< 0.00625" in s for s in table.sentences)
    assert "| 0.00625 |" in to_markdown(table)
