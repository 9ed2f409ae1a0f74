#!/usr/bin/env bash
# The GPU speed check of the suite, in one call of under 8 minutes:
#
#   bash benchmarks/gpu_check.sh            # prints a summary table last; JSON per step in $OUT or a temp dir
#
# For WRN-28-10 and WRN-40-2 it runs benchmarks.train_speed on the fast profile's GPU path (bf16
# autocast, fused SGD, GPU-resident data and augmentation, no per-step host sync, device-synchronised
# epoch timing), with channels_last on and off (the engine's default is on with bf16: this checks it), then
# torch.compile'd, and for WRN-40-2 also against the DataLoader+PIL fp32 baseline and with 4
# concurrent training processes on the one GPU (as `experiments.run --runs-per-gpu 4` would run them). Each line of the summary gives images/s, seconds
# per 50,000-image epoch and MFU against a bf16 matrix-multiply peak measured in the same process; the
# channels_last steps also profile where a step's time goes (convolutions' share, device idle). Then
# a data-parallel step against one process (benchmarks/ddp_step.py) and ImageNet's input paths
# (benchmarks/input_speed.py), printed after the summary.
# Target on an H200: WRN-28-10 <= 5 s per epoch (>= 40 % MFU).
#
# Without a GPU it runs the same steps on CPU at smoke sizes (to show the script works end to end;
# those numbers say nothing about a GPU). Every step has its own time limit, cut to what is left of
# the check's deadline, so a slow compile costs that step, not the whole check.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
RESULTS=${OUT:-$(mktemp -d)}/gpu_check
mkdir -p "$RESULTS"
SECONDS=0

if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    DEVICE=cuda
    BIG=(--train-images 10240 --repeats 3)          # WRN-28-10: ~1-3 s per epoch at the target
    SMALL=(--train-images 20480 --repeats 3)        # WRN-40-2: ~15x fewer FLOPs per image
    DDP=(--model WRN-28-10); INPUT=(--max-seconds 10)
    LIMIT=100; COMPILE_LIMIT=150; DEADLINE=300; EXTRA_LIMIT=90   # seconds: the whole check stays under 8 minutes
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,memory.used --format=csv || true
else
    DEVICE=cpu
    echo "gpu_check: no CUDA device; running every step on CPU at smoke sizes (not GPU numbers)"
    BIG=(--train-images 8 --batch-size 8 --repeats 1 --data-repeats 1)
    SMALL=(--train-images 32 --batch-size 16 --repeats 1 --data-repeats 1)
    DDP=(--model WRN-10-1 --batch-size 4 --steps 1); INPUT=(--quick)
    LIMIT=300; COMPILE_LIMIT=600; DEADLINE=3000; EXTRA_LIMIT=300
fi
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

step() {  # step NAME LIMIT ARGS...: one benchmark invocation, its JSON kept as NAME.json
    local name=$1 limit=$2; shift 2
    local left=$((DEADLINE - SECONDS))
    [ $left -lt $limit ] && limit=$left
    [ $limit -lt 20 ] && { echo "== $name skipped: the check's ${DEADLINE}s are spent" >&2; return; }
    echo "== $name (limit ${limit}s, at ${SECONDS}s)" >&2
    timeout --kill-after=10 "$limit" "$PY" -m benchmarks.train_speed --device "$DEVICE" --json "$@" \
        > "$RESULTS/$name.json" 2> "$RESULTS/$name.log"
    local rc=$?
    [ $rc -eq 0 ] || { echo "   $name failed (exit $rc): $(tail -n 2 "$RESULTS/$name.log")" >&2; rm -f "$RESULTS/$name.json"; }
}

step wrn28-10_bf16_cl      $LIMIT --model WRN-28-10 --precision bf16 --channels-last on  --no-baseline "${BIG[@]}" --breakdown
step wrn28-10_bf16_nchw    $LIMIT --model WRN-28-10 --precision bf16 --channels-last off --no-baseline "${BIG[@]}"
step wrn40-2_bf16_cl       $LIMIT --model WRN-40-2  --precision bf16 --channels-last on  "${SMALL[@]}" --concurrent 4 --breakdown
step wrn40-2_bf16_nchw     $LIMIT --model WRN-40-2  --precision bf16 --channels-last off --no-baseline "${SMALL[@]}"
step wrn28-10_bf16_cl_compiled $COMPILE_LIMIT --model WRN-28-10 --precision bf16 --channels-last on --compile --no-baseline "${BIG[@]}"
step wrn40-2_bf16_cl_compiled  $COMPILE_LIMIT --model WRN-40-2  --precision bf16 --channels-last on --compile --no-baseline "${SMALL[@]}"

# The CUDA path's fused SGD, its state cleared at a learning-rate drop, against foreach SGD
# (tests/wrn/test_equivalence.py; on CPU the same test runs in the test suite).
echo "== fused SGD against foreach SGD on $DEVICE (at ${SECONDS}s)" >&2
timeout 120 "$PY" -m pytest -q -p no:cacheprovider tests/wrn/test_equivalence.py -k fused > "$RESULTS/fused_sgd.log" 2>&1
echo "fused SGD equals foreach SGD across a momentum reset: $(tail -n 1 "$RESULTS/fused_sgd.log")"

# Data parallelism (benchmarks/ddp_step.py): a WRN-28-10 step of 2 processes on 2 GPUs over NCCL when
# there are 2 (else DistributedDataParallel in one process), against one process alone.
echo "== data-parallel step on $DEVICE (at ${SECONDS}s)" >&2
timeout --kill-after=10 "$EXTRA_LIMIT" "$PY" -m benchmarks.ddp_step --device "$DEVICE" "${DDP[@]}" \
    > "$RESULTS/ddp_step.txt" 2> "$RESULTS/ddp_step.log" || echo "   ddp_step failed: $(tail -n 2 "$RESULTS/ddp_step.log")" >&2

# ImageNet's input paths (benchmarks/input_speed.py): decoded, augmented 224x224 crops per second of
# PIL in DataLoader workers and of torchvision.io decoding (nvJPEG on the GPU), against what WRN-50-2
# consumes per GPU.
echo "== ImageNet input paths on $DEVICE (at ${SECONDS}s)" >&2
timeout --kill-after=10 "$EXTRA_LIMIT" "$PY" -m benchmarks.input_speed "${INPUT[@]}" \
    > "$RESULTS/input_speed.txt" 2> "$RESULTS/input_speed.log" || echo "   input_speed failed: $(tail -n 2 "$RESULTS/input_speed.log")" >&2

"$PY" - "$RESULTS" "$SECONDS" <<'EOF'
import json, sys
from pathlib import Path

results, elapsed = Path(sys.argv[1]), sys.argv[2]
print(f"\ngpu_check summary ({elapsed} s in all; JSON and logs in {results})")
print(f"{'step':<28}{'images/s':>10}{'s/50k epoch':>13}{'TFLOP/s':>9}{'bf16 peak':>11}{'MFU':>7}  notes")
for path in sorted(results.glob("*.json")):
    r = json.loads(path.read_text())
    notes = []
    if r["ratio"] is not None:
        notes.append(f"{r['ratio']:.1f}x baseline ({r['baseline_img_s']:,.0f} img/s, "
                     f"{r['baseline_workers']} workers); data {r['data_ratio']:.0f}x")
    if r["breakdown"]:
        b = r["breakdown"]
        notes.append(f"convolutions {b['convolution_share']:.0%} of the step, "
                     f"{b['ms_per_step']['unattributed'] / b['step_ms']:.0%} unattributed (on CUDA: device idle)")
    if r["concurrent"]:
        c = r["concurrent"]
        notes.append(f"{c['processes']} processes: {c['total_img_s']:,.0f} img/s total ({c['ratio']:.2f}x one)")
    print(f"{path.stem:<28}{r['suite_img_s']:>10,.0f}{r['epoch_50k_s']:>13.2f}{r['achieved_flops'] / 1e12:>9.1f}"
          f"{r['peak_flops'] / 1e12:>11.1f}{r['mfu']:>7.1%}  {'; '.join(notes)}")
for name in ("ddp_step", "input_speed"):
    path = results / f"{name}.txt"
    print(f"\n{path.read_text().rstrip()}" if path.is_file() and path.stat().st_size else f"\n{name}: no result")
EOF
