"""Small PNG figures for trial artifacts.

Built on `matplotlib.figure.Figure` without pyplot: no global backend switch, no
figure registry to leak from, and safe in worker threads.
"""
from __future__ import annotations

import io
from typing import Mapping, Sequence

from matplotlib.figure import Figure

SIZE = (5.0, 3.5)   # inches
DPI = 100


def new_figure(size: tuple[float, float] = SIZE) -> Figure:
    # No layout engine: constrained layout doubles the cost of a PNG, and every
    # trial draws two.
    return Figure(figsize=size, dpi=DPI)


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def learning_curve(history: Sequence[Mapping[str, float]], metric: str = "val_accuracy") -> bytes:
    """Train and validation loss (left) and one validation metric (right) by epoch."""
    fig = new_figure()
    loss_ax, metric_ax = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.14, top=0.9, wspace=0.3)
    epochs = range(1, len(history) + 1)
    for key in ("train_loss", "val_loss"):
        loss_ax.plot(epochs, [h.get(key, float("nan")) for h in history], label=key)
    loss_ax.set(xlabel="epoch", title="loss")
    loss_ax.legend(fontsize="small")
    metric_ax.plot(epochs, [h.get(metric, float("nan")) for h in history], color="tab:green")
    metric_ax.set(xlabel="epoch", title=metric)
    return to_png(fig)
