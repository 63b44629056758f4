"""Tasks: the loss, metrics and figure of one kind of problem, so that one training
loop trains every family. A builder's registered `task` names its Task here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Protocol, Sequence

import torch
import torch.nn.functional as F

from models.errors import unknown
from models.figures import new_figure, to_png


class Task(Protocol):
    name: str
    # Metrics besides "loss", which every task reports; the loop logs each as
    # train_<name> and val_<name>.
    metric_names: tuple[str, ...]
    figure_name: str                # the artifact name of `figure`'s PNG

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The differentiable training objective (mean over the batch)."""

    def metrics(self, output: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """"loss" and every one of metric_names, over a whole split."""

    def figure(self, output: torch.Tensor, y: torch.Tensor, *,
               class_names: Sequence[str] = ()) -> bytes | None:
        """A PNG that shows how the model does on these outputs, or None."""

    def training_step(self, model: torch.nn.Module, x: torch.Tensor,
                      y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, loss) of one training batch."""

    # Optional hooks, for tasks whose model is more than a function of x (see
    # models.generative); the loop calls each one, when defined, instead of its default:
    #   prepare(splits) -> Splits                      once, before training
    #   train_batch(model, x, y, update) -> {stat: v}  a batch with its own steps;
    #                                                  update(loss, module=None)
    #   evaluate(model, x, y) -> metrics               instead of metrics(model(x), y)
    #   artifacts(model, x, y, class_names) -> {file name: bytes}  at the end, on
    #                                                  validation data: what needs the
    #                                                  model itself (samples, decodes)


class Supervised:
    """The usual training step: the model sees the inputs, the loss sees the targets.
    Tasks whose models need more (the targets for teacher forcing, a VAE's KL
    term) override `training_step`; the training loop calls nothing else."""

    def training_step(self, model: torch.nn.Module, x: torch.Tensor,
                      y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(x)
        return out, self.loss(out, y)


@dataclass(frozen=True)
class Classification(Supervised):
    """Cross-entropy on logits; accuracy, macro-F1 and a confusion matrix."""

    label_smoothing: float = 0.0
    name: ClassVar[str] = "classification"
    metric_names: ClassVar[tuple[str, ...]] = ("accuracy", "f1")
    figure_name: ClassVar[str] = "confusion_matrix.png"

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # float(): bf16 logits lose too much precision inside log-softmax.
        return F.cross_entropy(output.float(), y, label_smoothing=self.label_smoothing)

    def metrics(self, output: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        output = output.float()
        cm = confusion_matrix(output.argmax(dim=1), y, output.shape[1])
        # Evaluation loss is plain cross-entropy so runs with different smoothing compare.
        return {"loss": F.cross_entropy(output, y).item(),
                "accuracy": (cm.diag().sum() / cm.sum().clamp(min=1)).item(),
                "f1": macro_f1(cm)}

    def figure(self, output: torch.Tensor, y: torch.Tensor, *,
               class_names: Sequence[str] = ()) -> bytes | None:
        n = output.shape[1]
        cm = confusion_matrix(output.float().argmax(dim=1), y, n).cpu().numpy()
        return confusion_figure(cm, list(class_names) or [str(i) for i in range(n)])


def confusion_matrix(pred: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Counts, rows = true class, columns = predicted class."""
    flat = torch.bincount(y.long() * n_classes + pred.long(), minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def macro_f1(cm: torch.Tensor) -> float:
    """Unweighted mean F1 over the classes that occur in the labels or predictions
    (what sklearn's f1_score(average="macro") computes)."""
    cm = cm.double()
    tp, actual, predicted = cm.diag(), cm.sum(dim=1), cm.sum(dim=0)
    seen = (actual + predicted) > 0
    if not seen.any():
        return 0.0
    return (2 * tp[seen] / (actual[seen] + predicted[seen])).mean().item()


def confusion_figure(cm, labels: list[str]) -> bytes:
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
        threshold = cm.max() / 2
        for (i, j), count in zip(((i, j) for i in ticks for j in ticks), cm.flat):
            ax.text(j, i, str(count), ha="center", va="center", fontsize="x-small",
                    color="white" if count > threshold else "black")
    return to_png(fig)


# Imported here: the generative tasks build on Supervised above.
from models.generative import Generation, Reconstruction  # noqa: E402

_TASKS: dict[str, Callable[..., Task]] = {
    "classification": Classification,
    "reconstruction": Reconstruction,
    "generation": Generation,
}


def task_names() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str, *, label_smoothing: float = 0.0) -> Task:
    """The task surface for `name`; `label_smoothing` applies to classification."""
    try:
        factory = _TASKS[name]
    except KeyError:
        raise unknown("task", name, _TASKS, key="task") from None
    return factory(label_smoothing=label_smoothing)
