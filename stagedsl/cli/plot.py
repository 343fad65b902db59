"""`staged plan --plot FILE.png`: draw the plan's LR curve with matplotlib (optional dependency)."""

from __future__ import annotations

from pathlib import Path

from stagedsl.errors import UsageError


def plot_lr_curve(curve: list[dict], path: Path, *, title: str = "") -> None:
    """Draw every group's LR per step, with stage boundaries, into a PNG file."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'stagedsl[plot]'", code="E090") from None
    figure, axes = plt.subplots(figsize=(9, 3.5))
    for stage in curve:
        for group, values in stage["curves"].items():
            steps = range(stage["start"], stage["start"] + len(values))
            axes.plot(steps, values, label=f"{stage['stage']}/{group}")
        axes.axvline(stage["start"], color="grey", linewidth=0.6, linestyle=":")
    axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("learning rate")
    axes.set_title(f"LR schedule — {title}")
    axes.legend(fontsize="small", loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
