"""What every stagedsl figure shares: matplotlib (Agg, optional), stage bands, colours, saving.

matplotlib is an optional dependency (extras ``report`` and ``plot``); `pyplot` imports it
on first use and says which extra to install when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from stagedsl.extras import import_optional

WIDTH = 11.0  # inches; at DPI this is the page's figure width
DPI = 110
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"
PASSED_COLOR = "#2ca02c"
FAILED_COLOR = "#d62728"
HANDOFF_COLOR = "#7b4fa0"
BAND_COLOR = "#000000"
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
"""Colours for parameter groups and compared runs, in order (default group first)."""


def pyplot(purpose: str, extra: str) -> Any:
    """``matplotlib.pyplot`` on the Agg backend; a `PluginError` (E103) naming ``stagedsl[extra]`` when missing."""
    matplotlib = import_optional("matplotlib", extra=extra, purpose=purpose)
    matplotlib.use("Agg")
    return import_optional("matplotlib.pyplot", extra=extra, purpose=purpose)


def colors_for(names: Iterable[str]) -> dict[str, str]:
    """One stable colour per name, in order of first appearance."""
    out: dict[str, str] = {}
    for name in names:
        if name not in out:
            out[name] = PALETTE[len(out) % len(PALETTE)]
    return out


def stage_bands(axes: Any, spans: Sequence[tuple[str, float, float]], *, labels: bool = True, extra: dict | None = None) -> None:
    """Shade every other stage, draw each boundary and write each stage's name at the top.

    `spans` are (label, start, end) on the x axis; `extra` maps a label to a second line.
    A stage too narrow for its name gets it written upwards.
    """
    if not spans:
        return
    import matplotlib.transforms as transforms

    top = transforms.blended_transform_factory(axes.transData, axes.transAxes)
    first, last = min(start for _, start, _ in spans), max(end for _, _, end in spans)
    total = last - first or 1.0
    axes.set_xlim(first, last + total * 0.01)
    for i, (label, start, end) in enumerate(spans):
        if i % 2 == 1:
            axes.axvspan(start, end, color=BAND_COLOR, alpha=0.05, linewidth=0)
        if i > 0:
            axes.axvline(start, color="#555555", linewidth=0.8, linestyle="--", alpha=0.7)
        if not labels:
            continue
        text = label + (f"\n{extra[label]}" if extra and extra.get(label) else "")
        narrow = (end - start) / total < 0.004 * max(len(label), 6)
        axes.text((start + end) / 2 if not narrow else start, 0.985, text, transform=top, ha="center" if not narrow else "left",
                  va="top", fontsize=8.5, rotation=90 if narrow else 0, color="#222222", clip_on=True,
                  bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})


def headroom(axes: Any, fraction: float = 0.22, *, below: float = 0.0, log: bool = False) -> None:
    """Leave `fraction` of the height free above the curves (stage names, gate notes) and `below` under them."""
    import math

    low, high = axes.get_ylim()
    scale = (math.log10, lambda v: 10 ** v) if log and low > 0 else (float, float)
    a, b = scale[0](low), scale[0](high)
    span = (b - a) or 1.0
    rest = 1 - fraction - below
    axes.set_ylim(scale[1](a - span * below / rest), scale[1](b + span * fraction / rest))


def wants_log(values: Sequence[float], ratio: float = 30.0) -> bool:
    """True when positive values spread over more than `ratio` (a log axis reads better)."""
    finite = [v for v in values if v == v and v not in (float("inf"), float("-inf"))]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > ratio


def label_axes(axes: Any, title: str, ylabel: str, *, log: bool, xlabel: str = "step") -> None:
    """Axis labels (the y one saying when it is logarithmic), a light grid and a left-aligned title."""
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel + (" (log scale)" if log else ""))
    axes.grid(True, alpha=0.25)
    axes.set_title(title, loc="left", fontsize=11)


def legend_below(figure: Any, handles: list, texts: list, *, room: float = 0.08, columns: int = 7) -> None:
    """One legend in a row under the plot (it never hides a curve), then the layout."""
    figure.legend(handles, texts, loc="lower center", ncol=max(1, min(columns, len(texts))), fontsize=8.5, frameon=False)
    figure.tight_layout(rect=(0, room, 1, 1))


def value_note(axes: Any, x: float, y: float, color: str) -> None:
    """Write `y` (an LR as a stage starts) just above the point, in the line's colour."""
    axes.annotate(f"{y:.2g}", (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7.5, color=color)


def save(figure: Any, path: Path) -> Path:
    """Write the figure as a PNG and release it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, facecolor="white")
    plt.close(figure)
    return path
