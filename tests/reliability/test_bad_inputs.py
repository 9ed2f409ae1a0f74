"""Bad input catalogue: malformed spec files, --set values, CLI flags, data folders and result folders.
Each must end with exit code 2, exactly one stderr line naming the problem, no traceback, and nothing
written: the test's folder (with a results folder holding a user's file) is unchanged.

Each case is a `BadInput`: a name, what the one line must name, and how its command line differs from
a valid smoke launch of a tiny user spec. Most run `experiments.run.main` in-process (fast); a few
also run the real command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from analysis.report import main as report_main
from experiments.plan import expand
from experiments.run import main as run_main
from experiments.spec import load_spec
from harness import REPO_ROOT, USER_SPEC, python_env, tree, write_spec
from wrn.data.fake import write_fake_dataset

SPEC_NAME = "reliability_tiny"
CIFAR = "cifar-10-batches-py"


# --- damaging a generated CIFAR-10 folder ----------------------------------------------------------

def _rewrite_batch(folder: Path, name: str, change: Callable[[dict], None]) -> None:
    """Change one pickled batch, then vouch for it in the manifest as a user's hand-made one would."""
    with open(folder / name, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    change(entry)
    with open(folder / name, "wb") as f:
        pickle.dump(entry, f, protocol=2)
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


def untouched(folder):  # generated data where the real dataset is expected
    pass


def prepared(folder):  # a user's subset: the manifest of wrn.manifest, not the generator's
    manifest = json.loads((folder / "wrn-manifest.json").read_text())
    del manifest["generated"]
    (folder / "wrn-manifest.json").write_text(json.dumps(manifest))


# --- the catalogue -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BadInput:
    """One bad command line: how it differs from ``run <tiny spec> --profile smoke --results R``.

    `spec`: a spec name or path instead of the tiny spec ("{tmp}" is the test's folder; None: no
    spec); `spec_bytes`: the spec file's whole content; `edit`: (old, new) replaced in the tiny spec;
    `data`: damages a copy of generated CIFAR-10 and launches the paper profile on it, where the data is
    checked before anything else; `results`: the results folder, under a file "afile" when it names
    one; `corrupt_runs`: the planned run folders exist with a damaged config.json."""

    name: str
    expect: tuple[str, ...]
    args: tuple[str, ...] = ()
    spec: str | None = "tiny"
    spec_bytes: bytes | None = None
    edit: tuple[str, str] | None = None
    profile: str = "smoke"
    data: Callable[[Path], None] | None = None
    results: str = "{tmp}/results"
    corrupt_runs: bool = False

    def argv(self, tmp: Path, base_data: Path, profile: bool = True) -> list[str]:
        """The command line in folder `tmp`; without the profile for `analysis.report`."""
        spec = self._spec(tmp)
        results = self.results.format(tmp=tmp)
        if "afile" in results:
            (tmp / "afile").write_text("x")
        if self.corrupt_runs:
            self._corrupt_run_folders(spec, Path(results))
        argv = [*([spec] if spec else []), "--results", results]
        if self.data is not None:
            root = tmp / "data"
            shutil.copytree(base_data, root)
            self.data(root / CIFAR)
            return [*argv, "--profile", "paper", "--yes", "--data-dir", str(root), *self.args]
        return [*argv, *(["--profile", self.profile] if profile else []), *(a.format(tmp=tmp) for a in self.args)]

    def _spec(self, tmp: Path) -> str | None:
        if self.spec_bytes is not None:
            path = tmp / "spec.toml"
            path.write_bytes(self.spec_bytes)
            return str(path)
        if self.edit is not None:
            text = USER_SPEC.format(name=SPEC_NAME)
            old, new = self.edit
            assert old in text, old
            path = tmp / "bad_spec.toml"
            path.write_text(text.replace(old, new, 1))
            return str(path)
        if self.spec == "tiny":
            return str(write_spec(tmp))
        return None if self.spec is None else self.spec.format(tmp=tmp)

    @staticmethod
    def _corrupt_run_folders(spec: str, results: Path) -> None:
        for planned in expand(load_spec(spec), "smoke"):
            run = results / "runs" / SPEC_NAME / planned.run_id
            run.mkdir(parents=True)
            (run / "config.json").write_text('{"run_id": "')


CASES = [
    # spec files
    BadInput("unknown-spec-name", ("table_widht", "table_width"), spec="table_widht"),
    BadInput("missing-spec-file", ("nope.toml",), spec="{tmp}/nope.toml"),
    BadInput("spec-not-utf8", ("spec.toml", "cannot read"), spec_bytes=b"name = \xff\xfe\n"),
    BadInput("invalid-toml", ("spec.toml", "invalid TOML"), spec_bytes=b"name = \n"),
    BadInput("misspelled-top-key", ("titel", "title"), edit=('kind = "train"', 'kind = "train"\ntitel = "x"')),
    BadInput("misspelled-base-key", ("deph", "depth"), edit=("depth = 10", "deph = 10")),
    BadInput("seeds-wrong-type", ("seeds", "one"), edit=("seeds = 1", 'seeds = "one"')),
    BadInput("depth-wrong-type", ("depth", "ten"), edit=("depth = 10", 'depth = "ten"')),
    BadInput("depth-does-not-fit-block", ("depth", "11"), edit=("depth = 10", "depth = 11")),
    BadInput("dropout-one", ("dropout", "1.0"), edit=("dropout = false", "dropout = 1.0")),
    BadInput("unknown-dataset", ("cifar11",), edit=('dataset = "cifar10"', 'dataset = "cifar11"')),
    BadInput("missing-table", ("table", "missing"), edit=('[table]\nrows = ["k"]\nmetric = "test_error"\n', "")),
    BadInput("shipped-spec-name", ("table_width", "shipped"), edit=(f'name = "{SPEC_NAME}"', 'name = "table_width"')),
    BadInput("unknown-kind", ("kind", "trian"), edit=('kind = "train"', 'kind = "trian"')),
    BadInput("unknown-metric", ("test_eror",), edit=('metrics = ["test_error"]', 'metrics = ["test_eror"]')),
    BadInput("unknown-profile", ("smok", "smoke"), profile="smok"),
    # --set
    BadInput("set-without-equals", ("--set", "epochs"), args=("--set", "epochs")),
    BadInput("set-unknown-key", ("epoch", "epochs"), args=("--set", "epoch=2")),
    BadInput("set-wrong-type", ("epochs", "two"), args=("--set", "epochs=two")),
    BadInput("set-dropout-out-of-range", ("dropout", "1.5"), args=("--set", "dropout=1.5")),
    BadInput("set-negative-lr", ("lr", "-0.1"), args=("--set", "lr=-0.1")),
    BadInput("set-seed", ("seed",), args=("--set", "seed=3")),
    BadInput("set-twice", ("epochs", "twice"), args=("--set", "epochs=1", "--set", "epochs=2")),
    BadInput("set-milestones-decreasing", ("lr_milestones",), args=("--set", "lr_milestones=[5,2]")),
    BadInput("set-bad-block", ("block", "B(3,x)"), args=("--set", "block=B(3,x)")),
    # flags
    BadInput("no-spec", ("spec",), spec=None),
    BadInput("seeds-zero", ("--seeds", "0"), args=("--seeds", "0")),
    BadInput("seeds-not-integer", ("--seeds", "two"), args=("--seeds", "two")),
    BadInput("max-parallel-zero", ("--max-parallel", "0"), args=("--max-parallel", "0")),
    BadInput("runs-per-gpu-zero", ("--runs-per-gpu", "0"), args=("--runs-per-gpu", "0")),
    BadInput("device-tflops-negative", ("--device-tflops", "-1"), args=("--device-tflops", "-1")),
    BadInput("budget-zero", ("--budget-gpu-hours", "0"), args=("--budget-gpu-hours", "0")),
    BadInput("budget-over", ("--budget-gpu-hours", "estimated"), args=("--budget-gpu-hours", "1e-6")),
    BadInput("json-without-dry-run", ("--json", "--dry-run"), args=("--json",)),
    BadInput("wait-without-slurm", ("--wait", "slurm"), args=("--wait",)),
    BadInput("unknown-executor", ("--executor", "kubernetes"), args=("--executor", "kubernetes")),
    BadInput("unknown-flag", ("--frobnicate",), args=("--frobnicate",)),
    BadInput("unknown-cluster", ("--cluster", "nowhere"), args=("--executor", "slurm", "--cluster", "nowhere")),
    # data folders: the paper profile checks them before anything is written
    BadInput("data-dir-missing", ("--data-dir", "no-such-data", "python -m wrn.download cifar10 --data-dir"),
             profile="paper", args=("--yes", "--data-dir", "{tmp}/no-such-data")),
    BadInput("data-dir-missing-smoke", ("--data-dir", "no-such-data", "generated data"),
             args=("--data-dir", "{tmp}/no-such-data")),
    BadInput("data-dir-is-a-file", ("--data-dir", "keep.txt", "not a folder"),
             args=("--data-dir", "{tmp}/results/keep.txt")),
    BadInput("set-subset-of-the-whole-size", ("data_source", "subset:50000:10000", "data_source=real"),
             args=("--set", "data_source=subset:50000:10000")),
    BadInput("data-wrong-shape", ("data_batch_1", "shape"), data=wrong_shape),
    BadInput("data-wrong-dtype", ("data_batch_1", "dtype"), data=wrong_dtype),
    BadInput("data-label-out-of-range", ("data_batch_1", "10"), data=label_out_of_range),
    BadInput("data-label-count", ("data_batch_1", "labels"), data=label_count),
    BadInput("data-tampered-checksum", ("data_batch_2", "sha256"), data=tampered),
    BadInput("data-truncated-file", ("data_batch_3",), data=truncated),
    BadInput("data-file-missing", ("test_batch", "missing"), data=missing_file),
    BadInput("data-manifest-count", ("data_batch", "count"), data=manifest_count),
    BadInput("data-manifest-not-json", ("wrn-manifest.json",), data=manifest_not_json),
    BadInput("data-official-md5", ("data_batch_1", "md5"), data=no_manifest),
    BadInput("data-not-the-real-size", ("data_source='real'", "data_source=synthetic:128:32 fits"), data=untouched),
    BadInput("data-subset-as-real", ("data_source='real'", "prepared data", "data_source=subset:128:32 fits"),
             data=prepared),
    BadInput("data-generated-as-subset", ("data_source='subset:128:32'", "generated by wrn.fake_data",
                                          "data_source=synthetic:128:32 fits"),
             data=untouched, args=("--set", "data_source=subset:128:32")),
    # result folders
    BadInput("results-under-a-file", ("--results", "afile"), results="{tmp}/afile/results"),
    BadInput("results-is-a-file", ("--results", "afile"), results="{tmp}/afile"),
    BadInput("run-folder-with-corrupt-config", ("config.json",), args=("--executor", "debug"), corrupt_runs=True),
]

REPORT_CASES = [
    BadInput("report-missing-results", ("never-made", "no runs"), results="{tmp}/never-made"),
    BadInput("report-unknown-spec", ("table_widht",), spec="table_widht"),
    BadInput("report-results-without-runs", ("no runs",)),
]

SUBPROCESS_CASES = [case for case in CASES if case.name in ("invalid-toml", "set-wrong-type", "unknown-flag",
                                                            "seeds-zero")]


@pytest.fixture(scope="module")
def base_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad-input-data")
    write_fake_dataset("cifar10", root, 128, 32, seed=0)
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    """The test's folder, with a user's results folder in it."""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "keep.txt").write_text("a user's results folder\n")
    return tmp_path


def check_one_line(code: int, stderr: str, expected: tuple[str, ...]) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, f"exit code {code}, stderr: {stderr}"
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{stderr}"
    for part in expected:
        assert part in lines[0], f"{part!r} not named in: {lines[0]}"


def call(main, argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse bypassing the one-line handler
        return e.code


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_launcher_rejects_bad_input(case, folder, base_data, capsys):
    argv = case.argv(folder, base_data)
    before = tree(folder)
    code = call(run_main, argv)
    check_one_line(code, capsys.readouterr().err, case.expect)
    assert tree(folder) == before, f"{case.name}: files were written or changed"


@pytest.mark.parametrize("case", REPORT_CASES, ids=lambda case: case.name)
def test_report_rejects_bad_input(case, folder, base_data, capsys):
    argv = case.argv(folder, base_data, profile=False)
    before = tree(folder)
    code = call(report_main, argv)
    check_one_line(code, capsys.readouterr().err, case.expect)
    assert tree(folder) == before


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=lambda case: case.name)
def test_command_line_rejects_bad_input(case, folder, base_data):
    argv = case.argv(folder, base_data)
    before = tree(folder)
    proc = subprocess.run([sys.executable, "-m", "experiments.run", *argv], cwd=REPO_ROOT, env=python_env(),
                          capture_output=True, text=True, timeout=120)
    check_one_line(proc.returncode, proc.stderr, case.expect)
    assert tree(folder) == before


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_an_unreadable_data_dir_is_one_line_under_every_profile(profile, folder, base_data, monkeypatch, capsys):
    """Permissions cannot be taken from root (the tests may run as root): os.access answers for them."""
    data = folder / "locked-data"
    shutil.copytree(base_data, data)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != data and real_access(path, mode, **kw))
    argv = [str(write_spec(folder)), "--results", str(folder / "results"), "--profile", profile, "--yes",
            "--data-dir", str(data)]
    before = tree(folder)
    check_one_line(call(run_main, argv), capsys.readouterr().err, ("--data-dir", "locked-data", "not readable"))
    assert tree(folder) == before
