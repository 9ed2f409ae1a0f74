"""Bad input catalogue (issue 7.6): malformed spec files, --set values, CLI flags, data folders and
result folders. Each must end with exit code 2, exactly one stderr line naming the problem, no
traceback, and nothing written: the --results folder (pre-filled with a sentinel file) is unchanged.

Most cases call `experiments.run.main(argv)` in-process (fast); a few run the real command line.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from harness import REPO_ROOT, USER_SPEC, python_env, tree, write_spec
from experiments.plan import expand
from experiments.spec import load_spec
from wrn.fake_data import write_fake_dataset

SPEC_NAME = "reliability_tiny"
CIFAR = "cifar-10-batches-py"


@dataclass
class Ctx:
    tmp: Path
    base_data: Path

    @property
    def results(self) -> Path:
        return self.tmp / "results"

    @property
    def spec(self) -> str:
        return str(write_spec(self.tmp))

    def spec_with(self, old: str, new: str) -> str:
        text = USER_SPEC.format(name=SPEC_NAME)
        assert old in text, old
        path = self.tmp / "bad_spec.toml"
        path.write_text(text.replace(old, new, 1))
        return str(path)

    def data(self, damage: Callable[[Path], None] | None = None) -> str:
        """A copy of the generated CIFAR-10 folder, damaged by `damage(folder)`."""
        root = self.tmp / "data"
        shutil.copytree(self.base_data, root)
        if damage is not None:
            damage(root / CIFAR)
        return str(root)

    def real(self, *extra: str) -> list[str]:
        """A launch on the real-data route (paper profile), which checks --data-dir before anything."""
        return [self.spec, "--profile", "paper", "--yes", "--results", str(self.results), *extra]

    def smoke(self, *extra: str) -> list[str]:
        return [self.spec, "--profile", "smoke", "--results", str(self.results), *extra]


# --- damaging a generated CIFAR-10 folder ----------------------------------------------------------

def _rewrite_batch(folder: Path, name: str, change: Callable[[dict], None], update_manifest: bool = True):
    with open(folder / name, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    change(entry)
    with open(folder / name, "wb") as f:
        pickle.dump(entry, f, protocol=2)
    if update_manifest:  # a user's hand-made manifest that vouches for the bad file
        _rehash(folder, name)


def _rehash(folder: Path, name: str) -> None:
    manifest = json.loads((folder / "wrn-manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "wrn-manifest.json").write_text(json.dumps(manifest))


def wrong_shape(folder):
    _rewrite_batch(folder, "data_batch_1", lambda e: e.update(data=e["data"][:, :3000].copy()))


def wrong_dtype(folder):
    _rewrite_batch(folder, "data_batch_1", lambda e: e.update(data=e["data"].astype(np.float32)))


def label_out_of_range(folder):
    _rewrite_batch(folder, "data_batch_1", lambda e: e.update(labels=[10] + e["labels"][1:]))


def label_count(folder):
    _rewrite_batch(folder, "data_batch_1", lambda e: e.update(labels=e["labels"][:-1]))


def tampered(folder):
    data = bytearray((folder / "data_batch_2").read_bytes())
    data[-50] ^= 0xFF
    (folder / "data_batch_2").write_bytes(bytes(data))


def truncated(folder):
    data = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(data[: len(data) // 2])
    _rehash(folder, "data_batch_3")


def missing_file(folder):
    (folder / "test_batch").unlink()


def manifest_count(folder):
    manifest = json.loads((folder / "wrn-manifest.json").read_text())
    manifest["counts"]["train"] += 16
    (folder / "wrn-manifest.json").write_text(json.dumps(manifest))


def manifest_not_json(folder):
    (folder / "wrn-manifest.json").write_text('{"format": "wrn-manifest/1", "files": {')


def no_manifest(folder):  # the official route: torchvision's md5 sums
    (folder / "wrn-manifest.json").unlink()


def _corrupt_run_config(ctx: Ctx) -> list[str]:
    for planned in expand(load_spec(ctx.spec), "smoke"):
        run = ctx.results / "runs" / SPEC_NAME / planned.run_id
        run.mkdir(parents=True)
        (run / "config.json").write_text('{"run_id": "')
    return ctx.smoke("--executor", "debug")


def _results_under_file(ctx: Ctx) -> list[str]:
    (ctx.tmp / "afile").write_text("x")
    return [ctx.spec, "--profile", "smoke", "--results", str(ctx.tmp / "afile" / "results")]


def _results_is_file(ctx: Ctx) -> list[str]:
    (ctx.tmp / "afile").write_text("x")
    return [ctx.spec, "--profile", "smoke", "--results", str(ctx.tmp / "afile")]


# id -> (argv builder, substrings the message must contain)
CASES: dict[str, tuple[Callable[[Ctx], list[str]], tuple[str, ...]]] = {
    # spec files
    "unknown-spec-name": (lambda c: ["table_widht", "--results", str(c.results)], ("table_widht", "table_width")),
    "missing-spec-file": (lambda c: [str(c.tmp / "nope.toml"), "--results", str(c.results)], ("nope.toml",)),
    "spec-not-utf8": (lambda c: [_write(c.tmp / "bin.toml", b"name = \xff\xfe\n"), "--results", str(c.results)],
                      ("bin.toml", "cannot read")),
    "invalid-toml": (lambda c: [_write(c.tmp / "broken.toml", b"name = \n"), "--results", str(c.results)],
                     ("broken.toml", "invalid TOML")),
    "misspelled-top-key": (lambda c: [c.spec_with('kind = "train"', 'kind = "train"\ntitel = "x"'),
                                      "--results", str(c.results)], ("titel", "title")),
    "misspelled-base-key": (lambda c: [c.spec_with("depth = 10", "deph = 10"), "--results", str(c.results)],
                            ("deph", "depth")),
    "seeds-wrong-type": (lambda c: [c.spec_with("seeds = 1", 'seeds = "one"'), "--results", str(c.results)],
                         ("seeds", "one")),
    "depth-wrong-type": (lambda c: [c.spec_with("depth = 10", 'depth = "ten"'), "--results", str(c.results)],
                         ("depth", "ten")),
    "depth-does-not-fit-block": (lambda c: [c.spec_with("depth = 10", "depth = 11"), "--results", str(c.results)],
                                 ("depth", "11")),
    "dropout-one": (lambda c: [c.spec_with("dropout = false", "dropout = 1.0"), "--results", str(c.results)],
                    ("dropout", "1.0")),
    "unknown-dataset": (lambda c: [c.spec_with('dataset = "cifar10"', 'dataset = "cifar11"'),
                                   "--results", str(c.results)], ("cifar11",)),
    "missing-table": (lambda c: [c.spec_with('[table]\nrows = ["k"]\nmetric = "test_error"\n', ""),
                                 "--results", str(c.results)], ("table", "missing")),
    "shipped-spec-name": (lambda c: [c.spec_with(f'name = "{SPEC_NAME}"', 'name = "table_width"'),
                                     "--results", str(c.results)], ("table_width", "shipped")),
    "unknown-kind": (lambda c: [c.spec_with('kind = "train"', 'kind = "trian"'), "--results", str(c.results)],
                     ("kind", "trian")),
    "unknown-metric": (lambda c: [c.spec_with('metrics = ["test_error"]', 'metrics = ["test_eror"]'),
                                  "--results", str(c.results)], ("test_eror",)),
    "unknown-profile": (lambda c: [c.spec, "--profile", "smok", "--results", str(c.results)], ("smok", "smoke")),
    # --set
    "set-without-equals": (lambda c: c.smoke("--set", "epochs"), ("--set", "epochs")),
    "set-unknown-key": (lambda c: c.smoke("--set", "epoch=2"), ("epoch", "epochs")),
    "set-wrong-type": (lambda c: c.smoke("--set", "epochs=two"), ("epochs", "two")),
    "set-dropout-out-of-range": (lambda c: c.smoke("--set", "dropout=1.5"), ("dropout", "1.5")),
    "set-negative-lr": (lambda c: c.smoke("--set", "lr=-0.1"), ("lr", "-0.1")),
    "set-seed": (lambda c: c.smoke("--set", "seed=3"), ("seed",)),
    "set-twice": (lambda c: c.smoke("--set", "epochs=1", "--set", "epochs=2"), ("epochs", "twice")),
    "set-milestones-decreasing": (lambda c: c.smoke("--set", "lr_milestones=[5,2]"), ("lr_milestones",)),
    "set-bad-block": (lambda c: c.smoke("--set", "block=B(3,x)"), ("block", "B(3,x)")),
    # CLI flags
    "no-spec": (lambda c: ["--results", str(c.results)], ("spec",)),
    "seeds-zero": (lambda c: c.smoke("--seeds", "0"), ("--seeds", "0")),
    "seeds-not-integer": (lambda c: c.smoke("--seeds", "two"), ("--seeds", "two")),
    "max-parallel-zero": (lambda c: c.smoke("--max-parallel", "0"), ("--max-parallel", "0")),
    "runs-per-gpu-zero": (lambda c: c.smoke("--runs-per-gpu", "0"), ("--runs-per-gpu", "0")),
    "device-tflops-negative": (lambda c: c.smoke("--device-tflops", "-1"), ("--device-tflops", "-1")),
    "json-without-dry-run": (lambda c: c.smoke("--json"), ("--json", "--dry-run")),
    "wait-without-slurm": (lambda c: c.smoke("--wait"), ("--wait", "slurm")),
    "unknown-executor": (lambda c: c.smoke("--executor", "kubernetes"), ("--executor", "kubernetes")),
    "unknown-flag": (lambda c: c.smoke("--frobnicate"), ("--frobnicate",)),
    "unknown-cluster": (lambda c: c.smoke("--executor", "slurm", "--cluster", "nowhere"), ("--cluster", "nowhere")),
    # data folders (real-data route: checked by the launcher before anything is written)
    "data-dir-missing": (lambda c: c.real("--data-dir", str(c.tmp / "no-such-data")), ("--data-dir", "no-such-data")),
    "data-wrong-shape": (lambda c: c.real("--data-dir", c.data(wrong_shape)), ("data_batch_1", "shape")),
    "data-wrong-dtype": (lambda c: c.real("--data-dir", c.data(wrong_dtype)), ("data_batch_1", "dtype")),
    "data-label-out-of-range": (lambda c: c.real("--data-dir", c.data(label_out_of_range)), ("data_batch_1", "10")),
    "data-label-count": (lambda c: c.real("--data-dir", c.data(label_count)), ("data_batch_1", "labels")),
    "data-tampered-checksum": (lambda c: c.real("--data-dir", c.data(tampered)), ("data_batch_2", "sha256")),
    "data-truncated-file": (lambda c: c.real("--data-dir", c.data(truncated)), ("data_batch_3",)),
    "data-file-missing": (lambda c: c.real("--data-dir", c.data(missing_file)), ("test_batch", "missing")),
    "data-manifest-count": (lambda c: c.real("--data-dir", c.data(manifest_count)), ("data_batch", "count")),
    "data-manifest-not-json": (lambda c: c.real("--data-dir", c.data(manifest_not_json)), ("wrn-manifest.json",)),
    "data-official-md5": (lambda c: c.real("--data-dir", c.data(no_manifest)), ("data_batch_1", "md5")),
    "data-not-the-real-size": (lambda c: c.real("--data-dir", c.data()), ("data_source", "128")),
    # result folders
    "results-under-a-file": (_results_under_file, ("--results", "afile")),
    "results-is-a-file": (_results_is_file, ("--results", "afile")),
    "run-folder-with-corrupt-config": (_corrupt_run_config, ("config.json",)),
}

REPORT_CASES = {
    "report-missing-results": (lambda c: [c.spec, "--results", str(c.tmp / "never-made")], ("never-made", "no runs")),
    "report-unknown-spec": (lambda c: ["table_widht", "--results", str(c.results)], ("table_widht",)),
    "report-results-without-runs": (lambda c: [c.spec, "--results", str(c.results)], ("no runs",)),
}

SUBPROCESS_CASES = ("invalid-toml", "set-wrong-type", "unknown-flag", "seeds-zero")


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.fixture(scope="module")
def base_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad-input-data")
    write_fake_dataset("cifar10", root, 128, 32, seed=0)
    return root


@pytest.fixture
def ctx(tmp_path, base_data) -> Ctx:
    c = Ctx(tmp_path, base_data)
    c.results.mkdir()
    (c.results / "keep.txt").write_text("a user's results folder\n")
    return c


def check_one_line(code: int, stderr: str, expected: tuple[str, ...]) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, f"exit code {code}, stderr: {stderr}"
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{stderr}"
    for part in expected:
        assert part in lines[0], f"{part!r} not named in: {lines[0]}"


@pytest.mark.parametrize("case", list(CASES))
def test_launcher_rejects_bad_input(case, ctx, capsys):
    from experiments.run import main

    argv = CASES[case][0](ctx)
    before = tree(ctx.tmp)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse bypassing the one-line handler
        code = e.code
    except BaseException as e:  # noqa: BLE001 - a traceback is the failure being tested for
        pytest.fail(f"{case}: raised {type(e).__name__}: {e}")
    out = capsys.readouterr()
    check_one_line(code, out.err, CASES[case][1])
    assert tree(ctx.tmp) == before, f"{case}: files were written or changed"


@pytest.mark.parametrize("case", list(REPORT_CASES))
def test_report_rejects_bad_input(case, ctx, capsys):
    from analysis.report import main

    argv = REPORT_CASES[case][0](ctx)
    before = tree(ctx.tmp)
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    check_one_line(code, out.err, REPORT_CASES[case][1])
    assert tree(ctx.tmp) == before


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_command_line_rejects_bad_input(case, ctx):
    argv = CASES[case][0](ctx)
    before = tree(ctx.tmp)
    proc = subprocess.run([sys.executable, "-m", "experiments.run", *argv], cwd=REPO_ROOT, env=python_env(),
                          capture_output=True, text=True, timeout=120)
    check_one_line(proc.returncode, proc.stderr, CASES[case][1])
    assert tree(ctx.tmp) == before


def test_catalogue_is_large_enough():
    assert len(CASES) + len(REPORT_CASES) >= 30
