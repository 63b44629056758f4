"""Small PNG figures for trial artifacts.

Built on `matplotlib.figure.Figure` without pyplot: no global backend switch, no
figure registry to leak from, and safe in worker threads.

A trial hands its figures over as `Drawing`s (the function and the few numbers it
plots) rather than PNG bytes, so that they are drawn where a core is spare: by the
tracking process beside a serial study, off the path of the next trial; by each
Ray worker before it returns its trial. The two every trial has (the learning
curve and the confusion matrix) are drawn on figures kept per thread and given new
data, which costs two thirds of building a new figure each time.
"""
from __future__ import annotations

import dataclasses
import io
import math
import threading
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hypersweep.models.trial import TrialResult

SIZE = (5.0, 3.5)   # inches
DPI = 100


def quiet_missing_glyphs() -> None:
    """A class name in a script the fonts lack (emoji, CJK) is drawn as boxes;
    matplotlib also warned, a line and its source line on the run's output for
    every figure. Set for the process as this module loads."""
    warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from (current )?font",
                            category=UserWarning)


quiet_missing_glyphs()


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


def canvas_png(canvas: Any) -> bytes:
    """An Agg canvas's pixels as drawn so far, as `savefig` would write them."""
    from matplotlib.image import imsave
    buf = io.BytesIO()
    imsave(buf, canvas.buffer_rgba(), format="png", origin="upper", dpi=canvas.figure.dpi)
    return buf.getvalue()


def warm_up() -> None:
    """Draw a learning curve and a small confusion matrix: the first figure of a
    process pays for importing the PNG backend and loading the fonts (about half a
    second), which a process that will draw can pay while it waits; and the
    learning curve's template is then ready for the first trial."""
    learning_curve([{"train_loss": 1.0, "val_loss": 1.0, "val_accuracy": 0.5}] * 2)
    confusion(np.eye(2, dtype=int), ("0", "1"))


class _Templates(threading.local):
    """Each thread's figures kept for reuse, by kind and shape. Building a figure
    (its axes, ticks and fonts) costs about a third of drawing one; a trial draws
    two, always of the same shapes, so each is built once per process and then
    only given new data. The PNG is the same, pixel for pixel, as a fresh figure's
    (tests/models/test_figures.py)."""

    LIMIT = 8           # shapes kept per thread (confusion matrices by class names)

    def __init__(self) -> None:
        self.kept: dict[tuple, Any] = {}

    def get(self, key: tuple, build: Callable[[], Any]) -> Any:
        template = self.kept.pop(key, None) or build()
        self.kept[key] = template               # the most recent last
        while len(self.kept) > self.LIMIT:
            del self.kept[next(iter(self.kept))]
        return template


_templates = _Templates()


class _CurveTemplate:
    KEYS = ("train_loss", "val_loss")

    def __init__(self) -> None:
        self.fig = fig = new_figure()
        self.loss_ax, self.metric_ax = fig.subplots(1, 2)
        fig.subplots_adjust(left=0.1, right=0.97, bottom=0.14, top=0.9, wspace=0.3)
        self.loss_lines = [self.loss_ax.plot([], [], label=key)[0] for key in self.KEYS]
        self.loss_ax.set(xlabel="epoch", title="loss")
        self.loss_ax.legend(fontsize="small")
        self.metric_line, = self.metric_ax.plot([], [], color="tab:green")
        self.metric_ax.set(xlabel="epoch")
        from matplotlib.ticker import MaxNLocator
        for ax in (self.loss_ax, self.metric_ax):
            # The y axes have no label: placing one beside the tick labels measures
            # them all again at each draw (a sixth of the figure's cost) for nothing.
            ax.yaxis.set_label_coords(0.0, 0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # not 1.5

    def draw(self, history: Sequence[Mapping[str, float]], metric: str) -> bytes:
        epochs = range(1, len(history) + 1)
        for line, key in (*zip(self.loss_lines, self.KEYS), (self.metric_line, metric)):
            values = [h.get(key, float("nan")) for h in history]
            line.set_data(epochs, values)
            # A single finite point (one epoch, or the one before a loss diverged) is
            # a line of no length: drawn as a dot
            line.set_marker("o" if sum(map(math.isfinite, values)) == 1 else "")
        self.metric_ax.set_title(metric)
        # A loss that diverged is not drawn: the title says where it went
        from matplotlib import rcParams
        gone = next(((i, k, h[k]) for i, h in enumerate(history, 1) for k in self.KEYS
                     if k in h and not math.isfinite(h[k])), None)
        self.loss_ax.set_title("loss" if gone is None else
                               f"loss ({gone[1]} {gone[2]} at epoch {gone[0]})",
                               color="black" if gone is None else "tab:red",
                               fontsize=rcParams["axes.titlesize"] if gone is None else "small")
        n = len(history)
        for ax in (self.loss_ax, self.metric_ax):
            ax.set_autoscaley_on(True)      # a flat curve's limits set before are not kept
            ax.relim()
            ax.autoscale_view()
            margin = 0.5 if n < 2 else 0.05 * (n - 1)     # the epochs, whichever are finite
            ax.set_xlim(1 - margin, max(n, 1) + margin)
            _readable_ylim(ax)
        return to_png(self.fig)


def _readable_ylim(ax: Any) -> None:
    """A flat curve (one epoch, a loss that did not move) spans a range so narrow
    that its ticks read 2.30490, 2.30495, ... past the figure's edge: widened to
    5% of its size each way, its ticks round numbers."""
    values = [v for line in ax.get_lines() for v in np.asarray(line.get_ydata(), dtype=float)
              if math.isfinite(v)]
    if not values:
        return
    lo, hi = min(values), max(values)
    size = max(abs(lo), abs(hi), 1e-12)
    if hi - lo < 1e-3 * size:
        ax.set_ylim(lo - 0.05 * size, hi + 0.05 * size)


def learning_curve(history: Sequence[Mapping[str, float]], metric: str = "val_accuracy") -> bytes:
    """Train and validation loss (left) and one validation metric (right) by epoch."""
    return _templates.get(("curve",), _CurveTemplate).draw(history, metric)


def curve_metric(objectives: Sequence[str]) -> str | None:
    """What a study's learning curves plot beside the losses: its first objective
    that is a validation metric; None (the task's first metric) where none is."""
    return next((m for m in objectives if m.startswith("val_") and m != "val_loss"), None)


def with_curve_metric(result: TrialResult, metric: str | None) -> TrialResult:
    """The result with its learning curve (not drawn yet) plotting `metric` beside
    the losses, where the trial's epochs report it: the study's objective (val_f1),
    not the task's first metric (val_accuracy)."""
    curve = result.artifacts.get("learning_curve.png")
    if metric is None or not isinstance(curve, Drawing) or \
            not any(metric in epoch for epoch in result.history):
        return result
    redrawn = dataclasses.replace(curve, kwargs={**curve.kwargs, "metric": metric})
    return dataclasses.replace(result, artifacts={**result.artifacts,
                                                  "learning_curve.png": redrawn})


LABEL_CHARS = 18     # a class name longer than this is cut, with "…"


def class_ticks(fig: Figure, ax: Any, labels: Sequence[str]) -> None:
    """Class names as the ticks of both axes. Names of more than two characters
    (folder and column values: `golden_retriever`) turn 45 degrees on the x axis,
    where they ran into each other, and the margins grow to hold them; a name past
    LABEL_CHARS is cut."""
    shown = [n if len(n) <= LABEL_CHARS else n[:LABEL_CHARS - 1] + "…" for n in labels]
    ax.set_xticklabels(shown, fontsize="small")
    ax.set_yticklabels(shown, fontsize="small")
    if max(map(len, shown), default=0) <= 2:
        return
    for text in ax.get_xticklabels():
        text.set(rotation=45, ha="right", rotation_mode="anchor")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    wide = max(t.get_window_extent(renderer).width for t in ax.get_yticklabels())
    tall = max(t.get_window_extent(renderer).height for t in ax.get_xticklabels())
    room = 2.2 * fig.dpi * 10 / 72      # the axis label and the ticks' pads, in pixels
    fig.subplots_adjust(left=min(0.45, max(0.12, (wide + room) / fig.bbox.width)),
                        bottom=min(0.45, max(0.12, (tall + room) / fig.bbox.height)))


class _ConfusionTemplate:
    """Only the matrix changes between trials: the image, and the counts on it.
    Everything else (title, labels, tick labels) is drawn once and kept as pixels;
    each trial then draws what lies over the image, in the order a full draw
    would: the image, the axes' frame and tick marks, the counts. This takes
    15 ms off each figure (26.5 -> 11.8 ms for ten classes): a full draw is
    mostly text layout."""

    def __init__(self, labels: Sequence[str], split: str) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        self.fig = fig = new_figure((4.2, 4.0))    # square cells
        self.canvas = FigureCanvasAgg(fig)
        self.ax = ax = fig.subplots()
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.93)
        n = len(labels)
        # No colorbar: the cells carry their counts.
        self.image = ax.imshow(np.zeros((n, n)), cmap="Blues")
        ticks = range(n)
        ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true",
               title=f"confusion matrix ({split})")
        ax.grid(False)      # lines across the cells, where a style turns a grid on
        class_ticks(fig, ax, labels)
        self.counts: list[Any] = []
        self.front: list[Any] = []       # drawn over the kept pixels, in this order
        self.background: Any = None

    def draw(self, cm: Any) -> bytes:
        cm = np.asarray(cm)
        self.image.set_data(cm)
        self.image.set_clim(cm.min(), cm.max())     # as imshow scales a new image
        for text in self.counts:
            text.remove()
        self.counts = self._count_labels(cm)
        if not _saved_as_drawn():
            return to_png(self.fig)     # a style that changes what savefig writes
        if self.background is None:
            self._keep_background()
        self.canvas.restore_region(self.background)
        renderer = self.canvas.get_renderer()
        for artist in (*self.front, *self.counts):
            artist.draw(renderer)
        return canvas_png(self.canvas)

    def _count_labels(self, cm: np.ndarray) -> list[Any]:
        if cm.shape[0] > 12:        # counts stay readable only for a few classes
            return []
        # Empty cells stay blank: the eye finds the confusions, and each label
        # drawn costs milliseconds.
        threshold = cm.max() / 2
        return [self.ax.text(j, i, str(count), ha="center", va="center", fontsize="x-small",
                             color="white" if count > threshold else "black")
                for (i, j), count in np.ndenumerate(cm) if count]

    def _keep_background(self) -> None:
        """Draw the figure without what overlaps the image, and keep its pixels."""
        self.canvas.draw()          # places the ticks
        # In the order a full draw takes them: by z-order (a style may put the
        # ticks under the frame), the image, the frame, then each axis' tick marks.
        layers = [(self.image.get_zorder(), [self.image]),
                  *((spine.get_zorder(), [spine]) for spine in self.ax.spines.values()),
                  *((axis.get_zorder(), [line for tick in axis.get_major_ticks()
                                         for line in (tick.tick1line, tick.tick2line)
                                         if line.get_visible()])
                    for axis in (self.ax.xaxis, self.ax.yaxis))]
        self.front = [a for _, artists in sorted(layers, key=lambda layer: layer[0]) for a in artists]
        hidden = [*self.front, *self.counts]
        for artist in hidden:
            artist.set_visible(False)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.fig.bbox)
        for artist in hidden:
            artist.set_visible(True)


def _saved_as_drawn() -> bool:
    """Whether `savefig` writes a figure as its canvas draws it (the defaults), so
    that pixels drawn on the canvas can be written as they are; a style may set
    another resolution, background colour or crop for saved figures."""
    from matplotlib import rcParams
    return (rcParams["savefig.dpi"] == "figure" and not rcParams["savefig.transparent"]
            and rcParams["savefig.facecolor"] == "auto" and rcParams["savefig.edgecolor"] == "auto"
            and rcParams["savefig.bbox"] in (None, "standard"))


def confusion(cm: Any, labels: Sequence[str], split: str = "validation") -> bytes:
    """A confusion matrix (rows = true class) of `split`, with its counts."""
    labels = tuple(labels)
    return _templates.get(("confusion", labels, split),
                          lambda: _ConfusionTemplate(labels, split)).draw(cm)
