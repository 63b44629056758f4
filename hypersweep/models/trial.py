"""Typed hand-offs between the search driver and the training code.

Training code receives a `TrialSpec`, calls `report(step, metrics)` once per
epoch, and returns a `TrialResult`. Nothing here knows about Optuna, Ray or
MLflow.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

# report(step, metrics) -> True when the trial should stop now (pruned).
Report = Callable[[int, Mapping[str, float]], bool]


class TrialState(str, enum.Enum):
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"


@dataclass(frozen=True)
class TrialSpec:
    """Everything needed to train one trial, and nothing else."""

    model: str                      # builder registry name
    data: Mapping[str, Any]         # dataset name and its options (DataConfig as a dict)
    params: Mapping[str, Any]       # every hyperparameter, fixed and sampled, flat
    seed: int
    trial_number: int = 0
    study: str = ""
    device: str = "cpu"            # "cpu" or "cuda[:N]"
    threads: int | None = None      # torch intra-op threads; None leaves torch's default

    def record(self) -> dict[str, Any]:
        """The spec as `trial.yaml` stores it: what replays the trial alone. `threads`
        (only when set) belongs to it: on CPU the thread count changes the last bits
        of the sums, and so the curves."""
        out = {"study": self.study, "trial_number": self.trial_number, "seed": self.seed,
               "threads": self.threads, "model": self.model, "data": dict(self.data),
               "params": dict(self.params)}
        return {k: v for k, v in out.items() if not (k == "threads" and v is None)}

    @classmethod
    def from_record(cls, raw: Mapping[str, Any], **changes: Any) -> "TrialSpec":
        """A spec from a stored `trial.yaml` (one written before `threads` was
        recorded has none), with `changes` applied."""
        threads = raw.get("threads")
        fields = {"model": raw["model"], "data": raw["data"], "params": raw["params"],
                  "seed": int(raw["seed"]), "trial_number": int(raw["trial_number"]),
                  "study": raw["study"], "threads": int(threads) if threads else None}
        return cls(**{**fields, **changes})


@dataclass(frozen=True)
class TrialResult:
    state: TrialState
    metrics: Mapping[str, float]                       # last epoch's metrics (plus summaries)
    history: tuple[Mapping[str, float], ...] = ()      # one dict per epoch, in order
    epochs: int = 0                                    # epochs actually trained
    reason: str | None = None                          # why it failed / was pruned
    # file name -> content: bytes, or a models.figures.Drawing the writer draws
    artifacts: Mapping[str, Any] = field(default_factory=dict)
    best_epoch: int | None = None      # early stopping: the epoch whose weights it ended on
