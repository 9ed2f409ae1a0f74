"""Make the stand-ins of tests/hooks (the training stand-in `fake_training`, the run folders of
`fabricate`, the CUDA stand-in `cuda_standin`, the stub worker) importable from every test, and give
every test a stand-in GPU node (`cuda_node`)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "hooks"))

from cuda_standin import CudaStandIn  # noqa: E402 - importable once the path above is set

GPUS = 4


@pytest.fixture
def cuda_node(monkeypatch):
    """Install a stand-in node of GPUS GPUs in this process as a process would see it through
    CUDA_VISIBLE_DEVICES `visible` (None: all) with LOCAL_RANK `local_rank`; a second call is another
    process's view, replacing the first. Uninstalled after the test."""
    installed = []

    def install(visible: str | None = None, local_rank: int | None = None) -> CudaStandIn:
        while installed:
            installed.pop().uninstall()
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        if local_rank is None:
            monkeypatch.delenv("LOCAL_RANK", raising=False)
        else:
            monkeypatch.setenv("LOCAL_RANK", str(local_rank))
        installed.append(CudaStandIn(GPUS).install())
        return installed[-1]

    yield install
    while installed:
        installed.pop().uninstall()
