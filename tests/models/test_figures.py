"""Per-trial figures drawn on kept templates look exactly like figures built for
their data alone (drawn here the plain way)."""
from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from hypersweep.models import figures


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def history(rng: np.random.Generator, n: int) -> list[dict[str, float]]:
    return [{"train_loss": float(rng.random() * 3), "val_loss": float(rng.random() * 5),
             "val_accuracy": float(rng.random()), "val_f1": float(rng.random())} for _ in range(n)]


def plain_curve(hist: list[dict[str, float]], metric: str) -> bytes:
    """The learning curve drawn on a figure built for it (a template never used)."""
    return figures._CurveTemplate().draw(hist, metric)


def plain_confusion(cm: np.ndarray, labels: list[str]) -> bytes:
    fig = figures.new_figure((4.2, 4.0))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.93)
    ax.imshow(cm, cmap="Blues")
    ticks = range(len(labels))
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true",
           title="confusion matrix (validation)")
    ax.grid(False)
    figures.class_ticks(fig, ax, labels)
    for (i, j), count in np.ndenumerate(cm):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize="x-small",
                    color="white" if count > cm.max() / 2 else "black")
    return figures.to_png(fig)


def counts(rng: np.random.Generator, k: int) -> np.ndarray:
    return rng.integers(0, 50, (k, k)) * (rng.random((k, k)) < 0.4)


@pytest.fixture(autouse=True)
def fresh_templates(monkeypatch):
    monkeypatch.setattr(figures, "_templates", figures._Templates())


def test_a_reused_learning_curve_equals_a_fresh_one():
    rng = np.random.default_rng(0)
    # Long then short, a NaN, another metric: nothing of one drawing stays in the next.
    cases = [(history(rng, 60), "val_accuracy"), (history(rng, 3), "val_f1"),
             (history(rng, 1), "val_accuracy"), (history(rng, 20), "val_accuracy")]
    cases[3][0][5]["val_loss"] = float("nan")
    for hist, metric in cases:
        reused = figures.learning_curve(hist, metric=metric)
        fresh = plain_curve(hist, metric)
        assert reused[:8] == b"\x89PNG\r\n\x1a\n"
        assert np.array_equal(pixels(reused), pixels(fresh))
    assert len(figures._templates.kept) == 1


def test_a_short_or_diverged_curve_is_drawn_readably():
    """One epoch drew two empty panels (a line of one point has no length), with
    ticks at 0.96, 0.98, ... and the loss's ticks past the figure's edge; a loss that
    became NaN left no word of it on the trial's only figure."""
    from matplotlib.ticker import MaxNLocator
    curve = figures._CurveTemplate()
    curve.draw([{"train_loss": 2.3051, "val_loss": 2.3049, "val_accuracy": 0.1}], "val_accuracy")
    assert [line.get_marker() for line in (*curve.loss_lines, curve.metric_line)] == ["o"] * 3
    assert [t for t in curve.loss_ax.get_xticks() if 0.5 <= t <= 1.5] == [1.0]
    low, high = curve.loss_ax.get_ylim()
    assert high - low > 0.2         # 5% of 2.3 each way: ticks 2.20, 2.25, ...
    assert curve.loss_ax.get_title() == "loss"
    curve.draw([{"train_loss": 2.3, "val_loss": 2.1, "val_accuracy": 0.3},
                {"train_loss": float("nan"), "val_loss": float("nan"), "val_accuracy": 0.1}],
               "val_accuracy")
    assert curve.loss_ax.get_title() == "loss (train_loss nan at epoch 2)"
    assert [line.get_marker() for line in curve.loss_lines] == ["o", "o"]   # epoch 1's
    assert curve.metric_line.get_marker() in ("", "None")                    # a line
    assert curve.metric_ax.get_ylim()[0] <= 0.1 and curve.metric_ax.get_ylim()[1] >= 0.3
    assert isinstance(curve.loss_ax.xaxis.get_major_locator(), MaxNLocator)


@pytest.mark.parametrize("k", [2, 3, 10, 12])
def test_a_reused_confusion_matrix_equals_a_fresh_one(k: int):
    """The labels and titles are kept as pixels; the image, frame, tick marks and
    counts drawn over them each time must give the same pixels as a full draw."""
    rng = np.random.default_rng(k)
    labels = [str(i) for i in range(k)]
    matrices = [counts(rng, k), np.diag(np.arange(1, k + 1)), np.zeros((k, k), int), counts(rng, k)]
    for cm in matrices:
        reused = figures.confusion(cm, labels)
        fresh = plain_confusion(cm, labels)
        assert np.array_equal(pixels(reused), pixels(fresh))
    # The last drawing has as many count labels as the last matrix has non-zero cells.
    template = figures._templates.kept[("confusion", tuple(labels), "validation")]
    assert len(template.counts) == np.count_nonzero(matrices[-1])


@pytest.mark.parametrize("style", ["ggplot", "classic", "dark_background", "seaborn-v0_8-ticks"])
def test_a_reused_confusion_matrix_equals_a_fresh_one_in_another_style(style: str):
    """Styles move the ticks under the frame, turn a grid on, put the ticks inside,
    save figures on another background: what is drawn over the kept pixels, or
    drawn in full where savefig would not write them as drawn, still comes out as
    a full draw would."""
    from matplotlib import style as styles

    rng = np.random.default_rng(7)
    labels = ["a", "b", "c", "d"]
    with styles.context(style):
        for cm in (counts(rng, 4), counts(rng, 4)):
            assert np.array_equal(pixels(figures.confusion(cm, labels)),
                                  pixels(plain_confusion(cm, labels)))


def test_each_set_of_class_names_has_its_template_and_old_ones_are_dropped():
    rng = np.random.default_rng(2)
    first = figures.confusion(counts(rng, 3), ["cat", "dog", "eel"])
    for k in range(2, 2 + figures._Templates.LIMIT):
        figures.confusion(counts(rng, k), [f"c{i}" for i in range(k)])
    assert len(figures._templates.kept) == figures._Templates.LIMIT
    assert ("confusion", ("cat", "dog", "eel")) not in figures._templates.kept
    assert pixels(first).shape == pixels(figures.confusion(counts(rng, 3), ["cat", "dog", "eel"])).shape


def test_threads_draw_on_their_own_templates():
    rng = np.random.default_rng(3)
    hists = [history(rng, n) for n in (5, 40, 12, 25)]
    expected = [pixels(plain_curve(h, "val_accuracy")) for h in hists]
    got: dict[int, list[np.ndarray]] = {}

    def draw(i: int) -> None:
        got[i] = [pixels(figures.learning_curve(h)) for h in hists for _ in range(2)]

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for drawn in got.values():
        assert all(np.array_equal(a, expected[j // 2]) for j, a in enumerate(drawn))


BREEDS = ["golden_retriever", "labrador", "german_shepherd", "poodle", "beagle",
          "rottweiler", "yorkshire_terrier", "boxer", "dachshund", "siberian_husky_long_name"]


def test_long_class_names_stay_apart_and_inside_the_confusion_matrix():
    """Folder and column values as class names: level, they ran into each other
    along the x axis and off the figure's left edge."""
    rng = np.random.default_rng(3)
    cm = counts(rng, len(BREEDS))
    assert np.array_equal(pixels(figures.confusion(cm, BREEDS)),
                          pixels(plain_confusion(cm, BREEDS)))
    template = figures._templates.kept[("confusion", tuple(BREEDS), "validation")]
    fig, ax = template.fig, template.ax
    renderer = template.canvas.get_renderer()
    box = fig.bbox
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
        extents = [t.get_window_extent(renderer) for t in ticks]
        assert all(box.x0 <= e.x0 and e.x1 <= box.x1 and box.y0 <= e.y0 and e.y1 <= box.y1
                   for e in extents)
    # Turned labels overlap in x; their right ends, one under each cell, do not.
    ends = [t.get_window_extent(renderer).x1 for t in ax.get_xticklabels()]
    assert all(a + 10 < b for a, b in zip(ends, ends[1:]))
    assert ax.get_xticklabels()[-1].get_text() == "siberian_husky_lo…"


def test_a_class_name_the_fonts_lack_is_drawn_without_a_warning(recwarn):
    """Emoji and CJK class names: matplotlib warned twice a figure, on the run's output.
    (The filter this module sets as it loads, set again: pytest resets the filters
    for each test.)"""
    figures.quiet_missing_glyphs()
    png = figures.confusion(np.eye(2, dtype=int), ("\U0001F436 dog", "\u732b cat"))
    assert png.startswith(b"\x89PNG")
    assert not [w for w in recwarn if "missing from" in str(w.message)]
