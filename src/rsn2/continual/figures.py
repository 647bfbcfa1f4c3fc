"""The figures of the continual benchmarks (matplotlib, written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    """Write ``fig`` beside ``path`` and move it into place (no half-written figure), then close it."""
    tmp = path.with_name(path.name + ".partial.png")
    fig.savefig(tmp, dpi=110)
    _pyplot().close(fig)
    tmp.replace(path)


def write_figure(results: dict[str, Any], path: Path) -> None:
    """One panel per method with R: each task's mean accuracy (over seeds) after every stage."""
    plt = _pyplot()
    with_r = {m: e for m, e in results["methods"].items() if "R_mean" in e}
    if not with_r:
        return
    fig, axes = plt.subplots(1, len(with_r), figsize=(3.2 * len(with_r), 3.0), sharey=True, squeeze=False)
    tasks = results["tasks"]
    for ax, (method, entry) in zip(axes[0], with_r.items(), strict=True):
        r = np.array([[np.nan if v is None else v for v in row] for row in entry["R_mean"]], dtype=float)
        for j, name in enumerate(tasks):
            ax.plot(range(1, len(r) + 1), r[:, j], marker=".", linewidth=1, label=name)
        ax.set_title(method)
        ax.set_xlabel("after stage")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    fig.suptitle(results["benchmark"]["title"])
    fig.tight_layout()
    _save(fig, path)


def write_capacity_figure(results: dict[str, Any], path: Path) -> None:
    """Accuracy of each new task when learned vs tasks learned, one line per keep fraction, STL dashed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for f, row in results["fractions"].items():
        ax.plot(
            range(1, len(row["learned"]) + 1), row["learned"], marker=".", linewidth=1, label=f"keep {float(f):.0%}"
        )
    stl = results["stl_reference"]["mean"]
    ax.axhline(stl, color="black", linestyle="--", linewidth=1, label=f"STL {stl:.2f}")
    ax.axhline(stl - 1.0, color="grey", linestyle=":", linewidth=1, label="STL - 1")
    ax.set_xlabel("task (order learned)")
    ax.set_ylabel("test accuracy when learned (%)")
    ax.set_title(f"{results['benchmark']['title']}: capacity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _save(fig, path)
