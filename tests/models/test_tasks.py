from __future__ import annotations

import pytest
import torch
from sklearn.metrics import f1_score

from hypersweep.models.errors import UserError
from hypersweep.models.figures import artifact_bytes
from hypersweep.models.tasks import confusion_matrix, get_task, macro_f1


def test_classification_metrics_match_sklearn():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (200,), generator=g)
    logits = torch.randn(200, 6, generator=g)   # class 5 is predicted but never true
    logits[:100, 0] += 3.0
    m = get_task("classification").metrics(logits, y)
    pred = logits.argmax(1)
    assert set(m) == {"loss", "accuracy", "f1"}
    assert m["accuracy"] == pytest.approx((pred == y).float().mean().item())
    assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item())


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_the_evaluation_loss_is_cross_entropy_at_any_logit_scale(scale: float):
    g = torch.Generator().manual_seed(1)
    logits, y = scale * torch.randn(300, 10, generator=g), torch.randint(0, 10, (300,), generator=g)
    loss = get_task("classification").metrics(logits, y)["loss"]
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix(torch.tensor([1, 1, 0]), torch.tensor([0, 1, 0]), 2)
    assert cm.tolist() == [[1, 1], [0, 1]]
    assert macro_f1(cm) == macro_f1(cm.numpy()) == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert macro_f1(torch.zeros(3, 3, dtype=torch.long)) == 0.0     # no sample at all


def test_label_smoothing_changes_the_training_loss_only():
    y = torch.tensor([0, 1])
    logits = torch.tensor([[4.0, 0.0], [0.0, 4.0]])
    plain, smooth = get_task("classification"), get_task("classification", label_smoothing=0.2)
    assert smooth.loss(logits, y) > plain.loss(logits, y)
    assert smooth.metrics(logits, y)["loss"] == plain.metrics(logits, y)["loss"]


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_training_metrics_from_batches_equal_those_over_the_outputs(smoothing: float):
    """The training loop hands over each batch's loss (the smoothed one where there
    is smoothing); the training metrics still report plain cross-entropy."""
    g = torch.Generator().manual_seed(2)
    logits, y = 3 * torch.randn(150, 4, generator=g), torch.randint(0, 4, (150,), generator=g)
    task = get_task("classification", label_smoothing=smoothing)
    batches = [slice(0, 64), slice(64, 128), slice(128, 150)]     # a short last batch
    losses = [task.loss(logits[b], y[b]) for b in batches]
    m = task.train_metrics(logits, y, losses, [64, 64, 22])
    whole = task.metrics(logits, y)
    assert m["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    assert m == pytest.approx(whole, rel=1e-6)


def test_figure_is_a_png():
    png = artifact_bytes(get_task("classification").figure(
        torch.randn(30, 3), torch.randint(0, 3, (30,)), class_names=["a", "b", "c"]))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


_G = torch.Generator().manual_seed(2)
FIGURE_CASES = {        # task: (outputs, targets) it draws a figure of
    "classification": (torch.randn(30, 3, generator=_G), torch.randint(0, 3, (30,), generator=_G)),
    "regression": (torch.randn(30, 1, generator=_G), torch.randn(30, 1, generator=_G)),
    "language_modelling": (torch.randn(4, 10, 8, generator=_G),
                           torch.randint(0, 8, (4, 10), generator=_G)),
    "sequence_transduction": (torch.randn(4, 5, 6, generator=_G),
                              torch.randint(0, 6, (4, 5), generator=_G)),
    "reconstruction": (torch.rand(6, 1, 8, 8, generator=_G), torch.rand(6, 1, 8, 8, generator=_G)),
}


@pytest.mark.parametrize("name", sorted(FIGURE_CASES))
def test_a_figure_names_the_split_it_shows(name):
    """The final run draws the trials' figures on test: their titles say so. The
    split changes only the title, so the PNGs differ; validation is the default."""
    task, (out, y) = get_task(name), FIGURE_CASES[name]
    png = {split: artifact_bytes(task.figure(out, y, split=split))
           for split in ("validation", "test")}
    assert png["test"][:8] == png["validation"][:8] == b"\x89PNG\r\n\x1a\n"
    assert png["test"] != png["validation"]
    assert artifact_bytes(task.figure(out, y)) == png["validation"]


def test_unknown_task():
    with pytest.raises(UserError, match="unknown task 'clasification'"):
        get_task("clasification")


def test_the_optional_hooks_documented_are_those_the_code_looks_up():
    """Task's comment lists every hook that the training loop (or the config, for
    train_metric_names) looks up on a task by name, and no other: a task author reads
    there what a task may define, and a hook missing from it is never implemented."""
    import inspect
    import re
    from pathlib import Path

    import hypersweep.models.tasks  # noqa: F401

    from hypersweep import models
    from hypersweep.models.tasks import Task, task_names

    root = Path(models.tasks.__file__).parents[1]
    looked_up = {m for package in ("models", "search") for path in (root / package).glob("*.py")
                 for m in re.findall(r'(?:getattr|hasattr)\((?:\w+\.)?task, "(\w+)"',
                                     path.read_text())}
    documented = set(re.findall(r"#   (\w+)[(:]", inspect.getsource(Task)))
    assert {"prepare", "train_batch", "epoch_metrics", "artifacts"} <= looked_up
    assert documented == looked_up
    for hook in documented:     # each one is some task's, as documented
        assert any(hasattr(get_task(name), hook) for name in task_names()), hook


@pytest.mark.parametrize("first", ["hypersweep.models.generative", "hypersweep.models.tasks"])
def test_the_task_modules_import_in_either_order(first: str):
    """A fresh interpreter: in this one both modules are imported already."""
    import subprocess
    import sys

    code = f"import {first}, hypersweep.models.generative, hypersweep.models.tasks"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", ["language_modelling", "sequence_transduction"])
def test_label_smoothing_changes_the_token_tasks_training_loss_only(name: str):
    y = torch.tensor([[0, 1, 2], [2, 1, 0]])
    logits = 4 * torch.nn.functional.one_hot(y, 3).float()     # confident and right
    plain, smooth = get_task(name), get_task(name, label_smoothing=0.2)
    assert smooth.loss(logits, y) > plain.loss(logits, y)
    assert smooth.metrics(logits, y) == plain.metrics(logits, y)


@pytest.mark.parametrize("name", ["regression", "reconstruction"])
def test_label_smoothing_is_refused_where_there_are_no_labels(name: str):
    with pytest.raises(UserError) as e:
        get_task(name, label_smoothing=0.1)
    assert str(e.value).startswith(f"params.label_smoothing: {name} has no class labels")
    assert "\n" not in str(e.value)
    assert get_task(name, label_smoothing=0.0).name == name


def test_every_metric_a_task_reports_has_a_direction():
    """An objective on a metric with no entry could be optimized the wrong way."""
    from hypersweep.models.tasks import BETTER, task_names
    from hypersweep.search.config import natural_direction, objective_metrics

    for name in task_names():
        for metric in objective_metrics(name):
            if metric not in ("param_count", "inference_ms"):
                assert natural_direction(metric) in ("minimize", "maximize"), (name, metric)
    assert natural_direction("val_loss") == "minimize"
    assert natural_direction("train_f1") == "maximize"
    assert natural_direction("val_fid") == "minimize"
    assert natural_direction("param_count") is None
    assert set(BETTER.values()) == {"minimize", "maximize"}
