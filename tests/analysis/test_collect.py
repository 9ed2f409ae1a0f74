import json
import math
from pathlib import Path

from fabricate import write_run

from analysis.collect import collect_all, collect_spec
from experiments.plan import expand
from experiments.spec import load_spec

SPEC = "table_deepening"


def _cfg(block, seed=0):
    return dict(dataset="cifar10", depth=40, k=2, block=block, depth_convention="true", preprocessing="zca", recipe="v1-2016-05", bn_init="ones",
                seed=seed)


def test_one_row_per_run_and_only_done_runs_are_finished(tmp_path):
    write_run(tmp_path, SPEC, _cfg("B(3,3)", 0), test_error=5.5, epochs=3)
    write_run(tmp_path, SPEC, _cfg("B(3,3)", 1), state="diverged")
    write_run(tmp_path, SPEC, _cfg("B(3,3)", 2), state="interrupted")
    write_run(tmp_path, SPEC, _cfg("B(3,3)", 3), state="failed")
    write_run(tmp_path, SPEC, _cfg("B(3,3)", 4), state="corrupt")
    write_run(tmp_path, SPEC, _cfg("B(3)", 0), state="todo")
    c = collect_spec(load_spec(SPEC), tmp_path)
    assert len(c.runs) == 6
    assert c.counts() == {"corrupt": 1, "diverged": 1, "done": 1, "failed": 1, "interrupted": 1, "todo": 1}
    assert list(c.finished["test_error"]) == [5.5]
    assert set(c.excluded["state"]) == {"corrupt", "diverged", "failed", "interrupted", "todo"}
    corrupt = c.runs[c.runs["state"] == "corrupt"].iloc[0]
    assert "unreadable result.json" in corrupt["reason"]
    assert "CUDA out of memory" in c.runs[c.runs["state"] == "failed"].iloc[0]["reason"]
    # config columns are typed values of the resolved config
    done = c.finished.iloc[0]
    assert (done["depth"], done["k"], done["block"], done["dropout"]) == (40, 2, "B(3,3)", 0.0)
    assert done["label"] == "WRN-40-2-B(3,3)-true" and done["git_commit"] == "0" * 40


def test_epochs_frame_is_long_with_config_columns(tmp_path):
    write_run(tmp_path, SPEC, _cfg("B(3,3)", 0), epochs=4)
    write_run(tmp_path, SPEC, _cfg("B(3)", 0), epochs=6)
    epochs = collect_spec(load_spec(SPEC), tmp_path).epochs
    assert len(epochs) == 10
    assert {"epoch", "train_loss", "test_error", "label", "block", "dataset", "state"} <= set(epochs.columns)
    assert sorted(epochs.groupby("block")["epoch"].max().items()) == [("B(3)", 6), ("B(3,3)", 4)]


def test_done_result_without_final_error_is_unreadable(tmp_path):
    path = write_run(tmp_path, SPEC, _cfg("B(3,3)", 0))
    result = json.loads((path / "result.json").read_text())
    result["final"] = None
    (path / "result.json").write_text(json.dumps(result))
    run = collect_spec(load_spec(SPEC), tmp_path).runs.iloc[0]
    assert run["state"] == "corrupt" and "final.test_error" in run["reason"]


def test_timing_runs_read_the_timing_block(tmp_path):
    cfg = dict(dataset="cifar10", arch="wrn", depth=40, k=4, batch_size=32)
    write_run(tmp_path, "figure_timing", cfg, timing={"ms_median": 68.0, "ms_min": 66.0, "ms_max": 71.0})
    run = collect_spec(load_spec("figure_timing"), tmp_path).finished.iloc[0]
    assert (run["time_ms"], run["time_ms_min"], run["time_ms_max"]) == (68.0, 66.0, 71.0)
    assert math.isnan(run["test_error"])


def test_collect_spec_knows_the_plan_and_collect_all_concatenates(tmp_path):
    spec = load_spec(SPEC)
    write_run(tmp_path, SPEC, _cfg("B(3,3)", 0))
    c = collect_spec(spec, tmp_path)
    assert c.planned == 20 and c.summary_line().startswith("1 of 20 planned runs done")
    write_run(tmp_path, "table_width", dict(dataset="cifar10", depth=40, k=1, preprocessing="zca", recipe="v1-2016-05"))
    both = collect_all(tmp_path, [spec, load_spec("table_width")])
    assert sorted(both.runs["spec"]) == ["table_deepening", "table_width"]


def test_nothing_there_gives_empty_frames(tmp_path):
    c = collect_spec(load_spec(SPEC), tmp_path / "missing")
    assert c.runs.empty and c.epochs.empty and c.counts() == {}


def test_the_documented_pandas_example_runs(tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parents[2] / "docs" / "usage.md").read_text()
    example = readme.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    for planned in expand(load_spec("table_block_type"), "smoke"):
        write_run(tmp_path / "results" / "smoke", "table_block_type", planned.config, profile="smoke")
    write_run(tmp_path / "results", "table_width", dict(dataset="cifar10", depth=40, k=1, preprocessing="zca", recipe="v1-2016-05"))
    names: dict = {}
    exec(compile(example, "docs/usage.md", "exec"), names)
    assert len(names["smoke"].runs) == 6 and set(names["smoke"].runs["state"]) == {"done"}
    assert len(names["smoke"].epochs) == 6 * 4
    assert list(names["every"].runs["spec"]) == ["table_width"]


def test_a_caption_names_data_other_than_its_profile_describes(tmp_path):
    """A paper-profile launch with --set data_source=subset:... is not "the real data"."""
    write_run(tmp_path, SPEC, _cfg("B(3,3)"), test_error=5.5)
    assert "trained on data_source" not in collect_spec(load_spec(SPEC), tmp_path).describe()
    subset = {"data_source": "subset:5000:1000"}
    write_run(tmp_path, SPEC, dict(_cfg("B(3,3)"), **subset), test_error=6.5)
    described = collect_spec(load_spec(SPEC), tmp_path, overrides=subset).describe()
    assert described.startswith("profile paper (the real data), trained on data_source subset:5000:1000, on cpu")


def test_a_caption_names_the_processes_that_trained_its_runs(tmp_path):
    """Runs of several processes say so, with each one's share of a step's batch and the backend; a
    single process says nothing."""
    write_run(tmp_path, SPEC, _cfg("B(3,3)"), test_error=5.5)
    assert "data-parallel" not in collect_spec(load_spec(SPEC), tmp_path).describe()
    shared = {"world_size": 2, "sync_bn": True}
    write_run(tmp_path, SPEC, dict(_cfg("B(3,3)"), **shared), test_error=6.5)
    collection = collect_spec(load_spec(SPEC), tmp_path, overrides=shared)
    assert ", data-parallel: 2 processes x 64 images (gloo)," in collection.describe()
    row = collection.finished.iloc[0]
    assert (row["world_size"], row["per_rank_batch"], row["backend"], row["sync_bn"]) == (2, 64, "gloo", True)
