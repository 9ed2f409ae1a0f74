"""The correctness checks of `python -m benchmarks.gpu_check`: what the suite computes on a device, held
against what it computes on the CPU (or in fp32, or eagerly), on generated data in the real formats.

Each check returns (passed, detail): True or False with the numbers it judged, or None with the reason
it cannot run here (a CUDA-only check on a CPU, NCCL with one GPU). The tolerances are stated beside
each check and measured on the CPU where the CPU can show them (`benchmarks.check_context`).

This module is the checks' registry (`CHECKS`, in the order they run) and how one is run; the checks
are in `benchmarks.numerics_checks` (fp32 numerics, training steps in lockstep with the CPU, bf16 and
compiled steps) and `benchmarks.engine_checks` (resume, fused SGD, host synchronisation, the input
pipelines, data parallelism).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

from benchmarks.check_context import Context, Outcome
from benchmarks.engine_checks import (data_parallel_equals_one_process, fused_sgd_equals_foreach, jpeg_decoders_agree,
                                      no_host_sync_per_step, pipeline_on_device_matches_cpu, resume_is_exact)
from benchmarks.numerics_checks import (compiled_trains, fast_profile_trains, paper_numerics_are_fp32,
                                        paper_steps_match_cpu)
from wrn.runtime import synchronize

CHECKS: dict[str, Callable[[Context], Outcome]] = {
    "paper_numerics_are_fp32": paper_numerics_are_fp32,
    "paper_steps_match_cpu": paper_steps_match_cpu,
    "resume_is_exact": resume_is_exact,
    "fused_sgd_equals_foreach": fused_sgd_equals_foreach,
    "no_host_sync_per_step": no_host_sync_per_step,
    "pipeline_on_device_matches_cpu": pipeline_on_device_matches_cpu,
    "jpeg_decoders_agree": jpeg_decoders_agree,
    "fast_profile_trains": fast_profile_trains,
    "compiled_trains": compiled_trains,
    "data_parallel_equals_one_process": data_parallel_equals_one_process,
}


def run_check(name: str, ctx: Context) -> dict:
    """One check as the report lists it: {name, passed (None: skipped), detail, seconds}; an exception
    is a failure with its message."""
    started = time.monotonic()
    try:
        passed, detail = CHECKS[name](ctx)
    except Exception as e:  # noqa: BLE001 - a check that cannot complete has failed, and says why
        passed, detail = False, f"raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        synchronize(ctx.device)
    return {"name": name, "passed": passed, "detail": detail, "seconds": round(time.monotonic() - started, 2)}


def scratch() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="wrn-gpu-check-")
