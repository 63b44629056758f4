"""Parameter importance at the end of a study: Optuna's fANOVA evaluator.

fANOVA fits a random forest to (params -> objective) over the completed trials
and splits the objective's variance among the parameters. It sees only the
parameters every completed trial has, so a conditional branch's parameters are
left out and the branch choice itself stands for them.

Its cost grows with the trials (about 9 ms of CPU each: 25 s at 2,000, at the end
of every run and resume): past TRIALS_MAX completed trials it is fitted to a seeded
random sample of that many, which tells the shares as well.
"""
from __future__ import annotations

import random
from typing import Mapping, Sequence

import optuna

from hypersweep.models.figures import new_figure, to_png
from hypersweep.search.config import Objective

Importances = dict[str, dict[str, float]]       # objective metric -> {param: share}
TRIALS_MAX = 500


def warm_up() -> None:
    """Import fANOVA's machinery (Optuna's importance module, scikit-learn's
    forests: a few tenths of a second) ahead of the study's end."""
    import optuna.importance  # noqa: F401


def param_importances(study: optuna.Study, objectives: Sequence[Objective],
                      seed: int = 0) -> Importances:
    """Importances per objective; empty when too few trials completed to tell."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    if len(complete) > TRIALS_MAX:
        from hypersweep.search.report import snapshot
        sample = sorted(random.Random(seed).sample(complete, TRIALS_MAX), key=lambda t: t.number)
        study = snapshot(sample, study.directions)
    out: Importances = {}
    for i, obj in enumerate(objectives):
        if len({t.values[i] for t in complete}) == 1:
            continue        # no variance to split: fANOVA split nothing evenly (1/3 each)
        target = None if len(objectives) == 1 else (lambda t, i=i: t.values[i])
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        try:
            imps = optuna.importance.get_param_importances(study, evaluator=evaluator,
                                                           target=target)
        except (ValueError, RuntimeError):     # e.g. no parameter shared by all trials
            continue
        if imps:
            out[obj.metric] = {k: float(v) for k, v in imps.items()}
    return out


def importance_metrics(imps: Importances) -> dict[str, float]:
    """`importance_<param>`; with several objectives `importance_<metric>_<param>`."""
    if len(imps) == 1:
        return {f"importance_{p}": v for p, v in next(iter(imps.values())).items()}
    return {f"importance_{m}_{p}": v for m, per in imps.items() for p, v in per.items()}


FEW_TRIALS = 10     # fANOVA's forest over fewer complete trials than this is a rough guide


def importance_figure(imps: Mapping[str, Mapping[str, float]], complete: int = 0) -> bytes:
    """One horizontal bar chart per objective, most important parameter on top;
    over fewer than FEW_TRIALS `complete` trials the figure says it is a rough
    guide, as `run` prints (the shares of a handful of trials are noise)."""
    fig = new_figure((5.0, 1.0 + 2.5 * len(imps)))
    axes = fig.subplots(len(imps), 1, squeeze=False)[:, 0]
    fig.subplots_adjust(left=0.3, right=0.95, bottom=0.12, top=0.9, hspace=0.5)
    label = importance_label(complete)
    for ax, (metric, per) in zip(axes, imps.items()):
        names = list(per)[::-1]
        ax.barh(names, [per[n] for n in names], color="tab:blue")
        ax.set(title=f"parameter importance: {metric}", xlim=(0, 1))
        ax.set_xlabel(label, fontsize=None if label == "importance (fANOVA)" else "small")
    return to_png(fig)


def importance_label(complete: int) -> str:
    """The importance axis' label: over fewer than FEW_TRIALS complete trials, that
    the shares are a rough guide (run prints it too)."""
    if 0 < complete < FEW_TRIALS:
        return f"importance (fANOVA over {complete} complete trials: a rough guide)"
    return "importance (fANOVA)"
