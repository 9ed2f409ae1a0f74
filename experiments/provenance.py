"""Where a result came from: code version, packages, host and device, recorded at every start."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from experiments.store import Provenance
from wrn.records import RuntimeSettings, timestamp

PACKAGES = ("torch", "torchvision", "numpy", "scipy", "pandas", "submitit")
SUITE_ROOT = Path(__file__).resolve().parent.parent


def git_state(root: Path = SUITE_ROOT) -> dict:
    """Commit and dirty flag of the suite's checkout. A code snapshot (a queued SLURM job) is not a
    checkout: it carries the submitting checkout's state in WRN_GIT_COMMIT / WRN_GIT_DIRTY."""
    if "WRN_GIT_COMMIT" in os.environ:
        return {"git_commit": os.environ["WRN_GIT_COMMIT"],
                "git_dirty": os.environ.get("WRN_GIT_DIRTY") == "1"}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return {"git_commit": commit, "git_dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def collect(runtime: RuntimeSettings) -> Provenance:
    """Everything that says where and how a run (re)started, with the run's `runtime` settings."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    git = git_state()
    return Provenance(git_commit=git["git_commit"], git_dirty=git["git_dirty"], packages=packages,
                      python=sys.version.split()[0], platform=platform.platform(), host=socket.gethostname(),
                      pid=os.getpid(), started_at=timestamp(), runtime=runtime,
                      slurm_job_id=os.environ.get("SLURM_JOB_ID"), slurm_array=os.environ.get("SLURM_ARRAY_JOB_ID"),
                      cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
