"""`staged plan --plot FILE.png`: draw the plan's LR curve of every parameter group (matplotlib, optional)."""

from __future__ import annotations

from pathlib import Path

from stagedsl.report import draw


def plot_lr_curve(curve: list[dict], path: Path, *, title: str = "") -> None:
    """Draw every group's LR per step on a log axis — one colour per group across stages — with the stages marked."""
    plt = draw.pyplot("--plot", "plot")
    colors = draw.colors_for(group for stage in curve for group in stage["curves"])
    figure, axes = plt.subplots(figsize=(draw.WIDTH * 0.9, 3.8))
    bands, labelled = [], set()
    for stage in curve:
        length = max((len(values) for values in stage["curves"].values()), default=0)
        bands.append((stage["stage"], stage["start"], stage["start"] + length))
        for group, values in stage["curves"].items():
            steps = range(stage["start"], stage["start"] + len(values))
            axes.plot(steps, values, color=colors[group], linewidth=1.8,
                      label=None if group in labelled else f"group {group}")
            labelled.add(group)
            if values:
                draw.value_note(axes, stage["start"], values[0], colors[group])
    positive = all(v > 0 for stage in curve for values in stage["curves"].values() for v in values)
    if positive:
        axes.set_yscale("log")
    draw.headroom(axes, 0.2, log=positive)
    draw.stage_bands(axes, bands)
    draw.label_axes(axes, f"LR schedule of every parameter group — {title}", "learning rate", log=positive)
    draw.legend_below(figure, *axes.get_legend_handles_labels())
    draw.save(figure, Path(path))
