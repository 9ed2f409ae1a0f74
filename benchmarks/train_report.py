"""What `python -m benchmarks.train_speed` reports of its result: the table it prints
(`format_report`) and the achieved rate of each mode, as the rates file keeps it for later dry runs
(`measurements`).

Apart from the measurements (`benchmarks.train_measure`) so that the result's one JSON shape is read
in one place, whichever process measured it.
"""

from __future__ import annotations

from typing import Any

from benchmarks.breakdown import format_breakdown
from benchmarks.train_measure import EPOCH_IMAGES
from experiments.rates import Measurement
from wrn.records import timestamp


def describe(precision: str, channels_last: bool, compiled: bool) -> str:
    return f"{precision}, {'channels_last' if channels_last else 'NCHW'}{', compiled' if compiled else ''}"


def format_report(r: dict[str, Any]) -> str:
    def rate(x):
        return "-" if x is None else f"{x:,.0f}"

    def times(x):
        return "" if x is None else f"{x:.2f}x"

    bf16 = "" if r["native_bf16"] is None else f", {'native' if r['native_bf16'] else 'no native'} bf16"
    lines = [
        f"{r['model']} on {r['device']} ({r['device_name']}, {r['cpu_capability']}{bf16}, {r['threads']} threads); generated "
        f"{r['dataset_format']}-format data, {r['train_images']} training images, batch {r['batch_size']}; "
        f"median of {r['repeats']} epochs after {r['warmup_epochs']} warm-up",
        f"params {r['params']:,}; forward {r['forward_flops'] / 1e9:.3f} GFLOP/image, "
        f"training {r['train_flops_per_image'] / 1e9:.3f} GFLOP/image (3 x forward)",
        "",
        f"{'training (data + step, eval excluded)':<44}{'images/s':>10}{'vs baseline':>13}{'s/50k epoch':>13}"
        f"{'TFLOP/s':>10}{'matmul peak':>13}{'of peak':>9}",
    ]
    if r["baseline_img_s"] is not None:
        lines.append(f"{'  baseline: DataLoader(' + str(r['baseline_workers']) + ')+PIL, fp32 NCHW':<44}"
                     f"{rate(r['baseline_img_s']):>10}{'1.00x':>13}{EPOCH_IMAGES / r['baseline_img_s']:>13.1f}")
    for m in r["modes"]:
        name = f"  suite: {describe(m['precision'], m['channels_last'], m['compile'])}"
        if m["suite_img_s"] is None:
            lines.append(f"{name:<44}{'-':>10}  no timed epoch within {r['max_seconds']:g} s")
            continue
        lines.append(f"{name:<44}{rate(m['suite_img_s']):>10}{times(m['ratio']):>13}{m['epoch_50k_s']:>13.1f}"
                     f"{m['achieved_flops'] / 1e12:>10.3f}{m['peak_flops'] / 1e12:>13.3f}{m['mfu']:>9.1%}"
                     + ("  (emulated bf16)" if m["emulated"] else ""))
    for precision in r["skipped_precisions"]:
        lines.append(f"  suite: {precision:<36}skipped: no native {precision} on this CPU ({r['cpu_capability']}); "
                     f"--precision {precision} measures it anyway")
    lines += ["", f"{'data pipeline alone':<44}{'images/s':>10}{'vs baseline':>13}"]
    if r["baseline_data_img_s"] is not None:
        lines.append(f"{'  baseline: DataLoader(' + str(r['baseline_workers']) + ')+PIL transforms':<44}"
                     f"{rate(r['baseline_data_img_s']):>10}{'1.00x':>13}")
    lines.append(f"{'  suite: wrn.data.make_pipeline':<44}{rate(r['data_img_s']):>10}{times(r['data_ratio']):>13}")
    if r["breakdown"] is not None:
        lines += ["", *format_breakdown(r["breakdown"], describe(r["precision"], r["channels_last"], r["compile"]))]
    c = r["concurrent"]
    if c is not None:
        lines += ["", f"concurrent: {c['processes']} suite processes ({c['threads_each']} threads each) "
                      f"{rate(c['total_img_s'])} images/s in total vs {rate(c['single_img_s'])} alone "
                      f"({c['ratio']:.2f}x; each: {', '.join(rate(x) for x in c['per_process_img_s'])})"]
    if r["bounded"]:
        lines += ["", f"bounded at {r['max_seconds']:g} s (fewer epochs than asked; --max-seconds): "
                      + ", ".join(r["bounded"])]
    if r.get("rates_file"):
        lines += ["", f"each mode's achieved rate kept in {r['rates_file']} for the dry runs on this device"]
    return "\n".join(lines)


def measurements(r: dict[str, Any]) -> list[Measurement]:
    """The achieved rate of each timed mode of a result, as the rates file keeps it."""
    when = timestamp()
    return [Measurement(r["device_name"], m["compute_mode"], r["model"], r["image_size"], r["forward_flops"],
                        m["device_tflops"], when, "benchmarks.train_speed")
            for m in r["modes"] if m["device_tflops"]]
