"""Small PNG figures for trial artifacts.

Built on `matplotlib.figure.Figure` without pyplot: no global backend switch, no
figure registry to leak from, and safe in worker threads.

A trial hands its figures over as `Drawing`s (the function and the few numbers it
plots) rather than PNG bytes, so that they are drawn where a core is spare: by the
tracking process beside a serial study, off the path of the next trial; by each
Ray worker before it returns its trial.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SIZE = (5.0, 3.5)   # inches
DPI = 100


@dataclass(frozen=True)
class Drawing:
    """A figure not drawn yet: `draw(*args, **kwargs) -> PNG bytes`. `draw` must be a
    module-level function of a module that imports no torch (this one), so that the
    process drawing it stays light."""

    draw: Callable[..., bytes]
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def render(self) -> bytes:
        return self.draw(*self.args, **self.kwargs)


def artifact_bytes(content: "bytes | str | Drawing") -> bytes | str:
    """An artifact's content as written: a Drawing drawn, anything else as is."""
    return content.render() if isinstance(content, Drawing) else content


def new_figure(size: tuple[float, float] = SIZE) -> Figure:
    # No layout engine: constrained layout doubles the cost of a PNG, and every
    # trial draws two. Imported here: a process that only hands Drawings on
    # (the driver of a serial study) never loads matplotlib.
    from matplotlib.figure import Figure
    return Figure(figsize=size, dpi=DPI)


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def warm_up() -> None:
    """Draw a small figure with text and an image, and throw it away: the first
    figure of a process pays for importing the PNG backend and loading the fonts
    (about half a second), which a process that will draw can pay while it waits."""
    fig = new_figure((1.0, 1.0))
    ax = fig.subplots()
    ax.imshow([[0, 1], [1, 0]], cmap="Blues")
    ax.plot([0, 1], [0, 1])
    ax.set(title="t", xlabel="x")
    to_png(fig)


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


def confusion(cm: Any, labels: Sequence[str]) -> bytes:
    """A confusion matrix (rows = true class) with its counts."""
    fig = new_figure((4.2, 4.0))    # square cells
    ax = fig.subplots()
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.93)
    ax.imshow(cm, cmap="Blues")   # no colorbar: the cells carry their counts
    ticks = range(len(labels))
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true",
           title="confusion matrix (validation)")
    ax.set_xticklabels(labels, fontsize="small")
    ax.set_yticklabels(labels, fontsize="small")
    if len(labels) <= 12:   # counts stay readable only for a few classes
        # Empty cells stay blank: the eye finds the confusions, and each label
        # drawn costs milliseconds.
        threshold = cm.max() / 2
        for (i, j), count in zip(((i, j) for i in ticks for j in ticks), cm.flat):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize="x-small",
                        color="white" if count > threshold else "black")
    return to_png(fig)
