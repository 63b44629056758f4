"""Tasks: the loss, metrics and figure of one kind of problem, so that one training
loop trains every family. A builder's registered `task` names its Task here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hypersweep.models.errors import UserError, refuse_label_smoothing, unknown
from hypersweep.models.figures import Drawing, confusion, new_figure, to_png
from hypersweep.models.generative import Generation, Reconstruction


# Which way each metric a task reports gets better, by its name without the split
# (val_/train_): what a study's objective must do with it. A metric a task adds
# needs its entry here (tests/models/test_tasks.py checks every task's).
BETTER: dict[str, str] = {
    **dict.fromkeys(("loss", "mse", "mae", "bce", "bpc", "fid"), "minimize"),
    **dict.fromkeys(("accuracy", "f1", "sequence_accuracy", "token_accuracy",
                     "confidence", "diversity"), "maximize"),
}


class Task(Protocol):
    name: str
    # Metrics besides "loss", which every task reports; the loop logs each as
    # val_<name> and, unless train_metric_names (below) says otherwise, train_<name>.
    metric_names: tuple[str, ...]
    figure_name: str                # the artifact name of `figure`'s PNG

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The differentiable training objective (mean over the batch)."""

    def metrics(self, output: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """"loss" and every one of metric_names, over a whole split."""

    def figure(self, output: torch.Tensor, y: torch.Tensor, *,
               class_names: Sequence[str] = (),
               split: str = "validation") -> bytes | Drawing | None:
        """A PNG (or a Drawing of one) that shows how the model does on these
        outputs of `split` (named in its title), or None."""

    def training_step(self, model: torch.nn.Module, x: torch.Tensor,
                      y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, loss) of one training batch."""

    # Optional hooks, for tasks whose model is more than a function of x (see
    # models.generative); the loop calls each one, when defined, instead of its default:
    #   check_data(splits) -> None                     UserError when the task cannot
    #                                                  use this dataset (also run by
    #                                                  `validate`, before any trial)
    #   check_model(model) -> None                     UserError when a fixed option
    #                                                  does not apply to the model
    #                                                  built (also run by `validate`)
    #   prepare(splits) -> Splits                      once, before training
    #   train_batch(model, x, y, update) -> {stat: v}  a batch with its own steps;
    #                                                  update(loss, module=None)
    #   epoch_metrics(means) -> metrics                with train_batch: an epoch's
    #                                                  training metrics from its
    #                                                  batches' stats, each the mean
    #                                                  (weighted by batch size) over the
    #                                                  batches that reported it; by
    #                                                  default the means themselves
    #                                                  (a GAN's loss is d_loss + g_loss)
    #   evaluate(model, x, y) -> metrics               instead of metrics(model(x), y)
    #   train_metrics(output, y, losses, sizes) -> metrics   an epoch's training
    #                                                  metrics, given each batch's
    #                                                  loss and size too (not called
    #                                                  with train_batch)
    #   artifacts(model, x, y, class_names) -> {file name: bytes}  at the end, on
    #                                                  validation (a trial) or test (the
    #                                                  final run, as test_<file name>):
    #                                                  what needs the model itself
    #                                                  (samples, decodes)
    # and an optional attribute, which the config reads for the objectives a study
    # may name:
    #   train_metric_names: tuple[str, ...]            the metrics besides "loss" that
    #                                                  training reports (train_<name>);
    #                                                  metric_names by default
    #                                                  (generation: none)


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
        _check_per_sample(output, y, self.name)
        # float(): bf16 logits lose too much precision inside log-softmax.
        return F.cross_entropy(output.float(), y, label_smoothing=self.label_smoothing)

    def metrics(self, output: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        # Evaluation loss is plain cross-entropy so runs with different smoothing compare.
        output = output.float()
        return self._metrics(output, y, mean_cross_entropy(output, y))

    def train_metrics(self, output: torch.Tensor, y: torch.Tensor,
                      losses: Sequence[torch.Tensor], sizes: Sequence[int]) -> dict[str, float]:
        """The training batches' metrics. Without smoothing their losses are the plain
        cross-entropy already, so the mean comes from them rather than from a second
        pass over every output (0.1 ms an epoch on the digits MLP, 1% of it)."""
        if self.label_smoothing:
            return self.metrics(output, y)
        loss = sum(v * n for v, n in zip(torch.stack(losses).tolist(), sizes)) / max(sum(sizes), 1)
        return self._metrics(output.float(), y, loss)

    @staticmethod
    def _metrics(output: torch.Tensor, y: torch.Tensor, loss: float) -> dict[str, float]:
        tp, actual, predicted = class_counts(confusion_matrix(output.argmax(dim=1), y, output.shape[1]))
        return {"loss": loss, "accuracy": sum(tp) / max(sum(actual), 1),
                "f1": _macro_f1(tp, actual, predicted)}

    def figure(self, output: torch.Tensor, y: torch.Tensor, *,
               class_names: Sequence[str] = (), split: str = "validation") -> Drawing:
        n = output.shape[1]
        cm = confusion_matrix(output.float().argmax(dim=1), y, n).cpu().numpy()
        return Drawing(confusion, (cm, list(class_names) or [str(i) for i in range(n)], split))


def confusion_matrix(pred: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Counts, rows = true class, columns = predicted class."""
    flat = torch.bincount(y.long() * n_classes + pred.long(), minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def class_counts(cm: torch.Tensor) -> tuple[list[int], list[int], list[int]]:
    """Per class: true positives, actual (row sums) and predicted (column sums), as
    Python numbers. Torch reduces the matrix and Python does the rest: in a
    training loop, where torch's code is warm and NumPy's is not, the few NumPy
    calls this replaced took 5 to 25 times their cost alone (0.2 ms an epoch, on
    the digits MLP)."""
    tp, actual, predicted = torch.stack((cm.diagonal(), cm.sum(1), cm.sum(0))).tolist()
    return tp, actual, predicted


def macro_f1(cm: "torch.Tensor | np.ndarray") -> float:
    """Unweighted mean F1 over the classes that occur in the labels or predictions
    (what sklearn's f1_score(average="macro") computes)."""
    return _macro_f1(*class_counts(torch.as_tensor(cm)))


def _macro_f1(tp: Sequence[int], actual: Sequence[int], predicted: Sequence[int]) -> float:
    f1 = [2 * t / (a + p) for t, a, p in zip(tp, actual, predicted) if a + p]
    return sum(f1) / len(f1) if f1 else 0.0


def mean_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy of (N, C) logits against class indices: log-sum-exp minus
    the target's logit, which is F.cross_entropy's value at a fraction of its cost
    on a whole split (its log-softmax is slow over rows of a few classes)."""
    if logits.dim() != 2:
        return F.cross_entropy(logits, y).item()
    return (logits.logsumexp(dim=1) - logits.gather(1, y.long().unsqueeze(1)).squeeze(1)).mean().item()


@dataclass(frozen=True)
class Regression(Supervised):
    """Mean squared error; metrics mse and mae; a predicted-vs-true scatter."""

    label_smoothing: float = 0.0     # accepted for a uniform factory; only 0
    name: ClassVar[str] = "regression"
    metric_names: ClassVar[tuple[str, ...]] = ("mse", "mae")
    figure_name: ClassVar[str] = "predicted_vs_true.png"

    def __post_init__(self) -> None:
        refuse_label_smoothing(self.label_smoothing, self.name)

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_per_sample(output, y, self.name)
        return F.mse_loss(output.float(), y.float().view_as(output))

    def metrics(self, output: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        err = output.float() - y.float().view_as(output)
        mse = err.pow(2).mean().item()
        return {"loss": mse, "mse": mse, "mae": err.abs().mean().item()}

    def figure(self, output: torch.Tensor, y: torch.Tensor, *,
               class_names: Sequence[str] = (), split: str = "validation") -> bytes | None:
        pred = output.float().reshape(len(output), -1)[:, 0].cpu().numpy()
        true = y.float().reshape(len(y), -1)[:, 0].cpu().numpy()
        fig = new_figure((4.0, 4.0))
        ax = fig.subplots()
        fig.subplots_adjust(left=0.19, right=0.95, bottom=0.13, top=0.92)
        ax.scatter(true, pred, s=8, alpha=0.6)
        lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1)   # perfect predictions
        ax.set(xlabel="true", ylabel="predicted", title=f"predicted vs true ({split})")
        return to_png(fig)


def _check_per_sample(output: torch.Tensor, y: torch.Tensor, task: str) -> None:
    # A many-to-many model on a per-sequence dataset would otherwise fail deep in the loss.
    if output.dim() == 3 and y.dim() < 3:
        raise UserError(f"model: {task} needs one output per sample for targets of shape "
                        f"{tuple(y.shape)}; the model gives one per time step, "
                        f"{tuple(output.shape)} (for rnn/lstm/gru set head: many_to_one)")


def _check_per_step(output: torch.Tensor, y: torch.Tensor, task: str) -> None:
    # A many-to-one model on a per-step dataset would otherwise fail deep in the loss.
    if output.dim() != 3 or output.shape[:2] != y.shape:
        raise UserError(f"model: {task} needs one output per time step, (batch, steps, "
                        f"vocabulary), for targets of shape {tuple(y.shape)}; the model gives "
                        f"{tuple(output.shape)} (for rnn/lstm/gru set head: many_to_many)")


def _token_loss(output: torch.Tensor, y: torch.Tensor,
                label_smoothing: float = 0.0) -> torch.Tensor:
    return F.cross_entropy(output.float().flatten(0, 1), y.flatten(),
                           label_smoothing=label_smoothing)


@dataclass(frozen=True)
class LanguageModelling(Supervised):
    """Next-character cross-entropy; bits per character; sampled text."""

    label_smoothing: float = 0.0
    name: ClassVar[str] = "language_modelling"
    metric_names: ClassVar[tuple[str, ...]] = ("bpc",)
    figure_name: ClassVar[str] = "bpc_by_position.png"

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_per_step(output, y, self.name)
        return _token_loss(output, y, self.label_smoothing)

    def metrics(self, output: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        loss = _token_loss(output, y).item()
        return {"loss": loss, "bpc": loss / math.log(2)}

    def figure(self, output: torch.Tensor, y: torch.Tensor, *,
               class_names: Sequence[str] = (), split: str = "validation") -> bytes | None:
        # Later positions see more context: the curve shows how much it helps.
        nll = F.cross_entropy(output.float().transpose(1, 2), y, reduction="none")
        fig = new_figure()
        ax = fig.subplots()
        fig.subplots_adjust(left=0.13, right=0.97, bottom=0.14, top=0.9)
        ax.plot(range(1, y.shape[1] + 1), (nll.mean(0) / math.log(2)).cpu().numpy())
        from matplotlib.ticker import MaxNLocator
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="position in window", ylabel="bits per character",
               title=f"bits per character by context length ({split})")
        return to_png(fig)

    def artifacts(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                  class_names: Sequence[str]) -> dict[str, bytes]:
        """samples.txt: text sampled at several temperatures, and a beam-search
        continuation, from the start of a validation window."""
        if not hasattr(model, "sample"):
            return {}
        prompt = x[:1, : min(16, x.shape[1])]
        decode = lambda ids: "".join(class_names[i] for i in ids.tolist())  # noqa: E731
        lines = [f"prompt: {decode(prompt[0])!r}", ""]
        g = torch.Generator(device=x.device).manual_seed(0)
        for t in (0.5, 1.0, 1.5):
            lines += [f"--- temperature {t}", decode(model.sample(prompt, 200, t, g)[0]), ""]
        if hasattr(model, "beam_search"):
            lines += ["--- beam search (width 5)", decode(model.beam_search(prompt, 80, 5)[0])]
        return {"samples.txt": "\n".join(lines).encode()}


def varying_positions(y: torch.Tensor) -> torch.Tensor:
    """A mask of the time steps whose target differs between some of the sequences
    `y` (batch, steps); every step when none does (one sequence, or all the same)."""
    varies = (y != y[:1]).any(dim=0)
    return varies if varies.any() else torch.ones_like(varies)


@dataclass(frozen=True)
class SequenceTransduction(Supervised):
    """Per-token cross-entropy; sequence accuracy (every token right) and token
    accuracy, over the positions whose target varies across the split: a position
    with the same target in every sequence (copy's blanks before the recall) takes no
    memory of the input, and counting them would score a copy model that outputs
    nothing 2/3. Models with `teacher_forcing = True` (seq2seq) see the targets while
    training; in eval mode they decode on their own."""

    label_smoothing: float = 0.0
    name: ClassVar[str] = "sequence_transduction"
    metric_names: ClassVar[tuple[str, ...]] = ("sequence_accuracy", "token_accuracy")
    figure_name: ClassVar[str] = "decoded_examples.png"

    def training_step(self, model: torch.nn.Module, x: torch.Tensor,
                      y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(x, y) if getattr(model, "teacher_forcing", False) else model(x)
        return out, self.loss(out, y)

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_per_step(output, y, self.name)
        return _token_loss(output, y, self.label_smoothing)

    def metrics(self, output: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        right = output.argmax(-1) == y
        return {"loss": _token_loss(output, y).item(),
                "sequence_accuracy": right.all(dim=1).float().mean().item(),
                "token_accuracy": right[:, varying_positions(y)].float().mean().item()}

    def figure(self, output: torch.Tensor, y: torch.Tensor, *,
               class_names: Sequence[str] = (), split: str = "validation") -> bytes | None:
        """Eight validation examples, target above prediction, wrong tokens in red;
        and token accuracy by position."""
        pred = output.argmax(-1).cpu()
        y = y.cpu()
        names = list(class_names) or [str(i) for i in range(output.shape[-1])]
        fig = new_figure((6.0, 4.0))
        text_ax, pos_ax = fig.subplots(1, 2, width_ratios=[3, 2])
        fig.subplots_adjust(left=0.02, right=0.97, bottom=0.13, top=0.9, wspace=0.25)
        text_ax.set_axis_off()
        text_ax.set_title(f"target / decoded ({split})", fontsize="small")
        rows = min(8, len(y))
        width = max(1, y.shape[1])
        for r in range(rows):
            for t in range(y.shape[1]):
                xpos, top = t / width, 1 - (r + 0.3) / rows
                text_ax.text(xpos, top, names[y[r, t]], family="monospace", fontsize="small",
                             transform=text_ax.transAxes)
                ok = pred[r, t] == y[r, t]
                text_ax.text(xpos, top - 0.4 / rows, names[pred[r, t]], family="monospace",
                             fontsize="small", color="black" if ok else "red",
                             transform=text_ax.transAxes)
        pos_ax.bar(range(1, y.shape[1] + 1), (pred == y).float().mean(0).numpy())
        pos_ax.set(xlabel="position", ylim=(0, 1), title="token accuracy")
        from matplotlib.ticker import MaxNLocator
        pos_ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # no position 2.5
        return to_png(fig)

    def artifacts(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                  class_names: Sequence[str]) -> dict[str, bytes]:
        """decoded_examples.txt: validation inputs, their targets, and the model's
        greedy and beam-search decodes (seq2seq), or its output at each step (an
        RNN with one output per step, which does not decode)."""
        names = list(class_names) or [str(i) for i in range(int(y.max()) + 1)]
        show = lambda ids: " ".join(names[i] for i in ids.tolist())  # noqa: E731
        xs, ys = x[:20], y[:20]
        if hasattr(model, "decode"):
            decodes = {"greedy": model.decode(xs, "greedy"), "beam": model.decode(xs, "beam")}
        else:
            decodes = {"output": model(xs).argmax(-1)}
        lines = []
        for i in range(len(ys)):
            src = show(xs[i].argmax(-1)) if xs.dim() == 3 else show(xs[i])
            lines += [f"input:  {src}", f"target: {show(ys[i])}",
                      *(f"{k + ':':<7} {show(v[i])}" for k, v in decodes.items()), ""]
        return {"decoded_examples.txt": "\n".join(lines).encode()}


_TASKS: dict[str, Callable[..., Task]] = {
    "classification": Classification,
    "regression": Regression,
    "language_modelling": LanguageModelling,
    "sequence_transduction": SequenceTransduction,
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
