"""A spec's figures as files: each drawn by its kind's function (`DRAWERS`), stamped with what its
runs are (profile, data, device, precision) under everything it draws, and saved as PNG and PDF.

Apart from the kinds, so that every kind is written, named and stamped the same way, and a test can
stand in for `save` to look at the figures instead.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from analysis.collect import Collection
from analysis.figures.bars import timing_bars
from analysis.figures.curves import curves
from analysis.figures.differences import differences
from analysis.figures.points import error_vs_params, pointplot
from analysis.tables import SpecTable
from wrn.files import atomic_write

FORMATS = ("png", "pdf")
DPI = 150
STAMP_FONTSIZE = 8


def save(fig, out_dir: Path, stem: str) -> list[Path]:
    """Write `fig` as <stem>.png and <stem>.pdf atomically; close it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [atomic_write(out_dir / f"{stem}.{fmt}",
                            lambda handle, fmt=fmt: fig.savefig(handle, format=fmt, dpi=DPI, bbox_inches="tight"),
                            binary=True)
               for fmt in FORMATS]
    plt.close(fig)
    return written


DRAWERS = {"pointplot": pointplot, "curves": curves, "timing_bars": timing_bars,
           "error_vs_params": error_vs_params, "differences": differences}


def figure_stem(spec_name: str, index: int, spec_fig, all_figs) -> str:
    """<spec>_<kind>, with the figure's position appended when a spec has two of one kind."""
    same_kind = [f for f in all_figs if f.kind == spec_fig.kind]
    return f"{spec_name}_{spec_fig.kind}" + (f"_{index}" if len(same_kind) > 1 else "")


def write_figures(spec, table: SpecTable, collection: Collection, out_dir: Path, suffix: str = "",
                  error_labels: dict[str, float] | None = None) -> list[Path]:
    """Draw and save every figure of `spec`, each stamped with what its runs are, as
    <spec>_<kind><suffix> (`suffix`: the profile's, `experiments.profiles.Profile.suffix`); returns the
    files written."""
    written = []
    for index, spec_fig in enumerate(spec.figures):
        draw = DRAWERS[spec_fig.kind]
        fig = draw(spec_fig, table, collection, error_labels) if spec_fig.kind == "timing_bars" \
            else draw(spec_fig, table, collection)
        stamp(fig, table.description)
        written += save(fig, out_dir, figure_stem(spec.name, index, spec_fig, spec.figures) + suffix)
    return written


def stamp(fig, text: str) -> None:
    """What the figure's runs are (profile, data, device, precision), in small grey print under
    everything the figure draws, so it never covers a title, a legend or a tick label; saving with a
    tight bounding box keeps it in the file."""
    fig.canvas.draw()  # runs the layout: the stamp goes under where everything ends up
    fig.set_layout_engine("none")  # and freezes it: a tight save would lay out again in a taller figure
    renderer = fig.canvas.get_renderer()
    for legend in fig.legends:  # pinned where they are: they anchor to the figure's box, which a tight save grows
        legend.set_bbox_to_anchor(legend.get_window_extent(renderer).transformed(fig.transFigure.inverted()),
                                  transform=fig.transFigure)
        legend.set_loc("center")
    drawn = fig.get_tightbbox(renderer)  # inches
    gap = 0.08
    fig.text(drawn.x0 / fig.get_figwidth(), (drawn.y0 - gap) / fig.get_figheight(), text,
             fontsize=STAMP_FONTSIZE, color="0.35", ha="left", va="top", wrap=True, gid="stamp")
