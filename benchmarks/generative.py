"""Speed and quality of the generative families on digits.

    python -m benchmarks.generative            # the full run (a few minutes)
    python -m benchmarks.generative --quick    # a smoke run at small scale
    python -m benchmarks.run --only generative  # into RESULTS.md

For each configuration: the median epoch time (training plus validation, which
for generation includes sampling and scoring), and the quality after the first and
the last epoch (val_mse for autoencoders, val_fid for VAEs and GANs); for the
frozen classifier: the one-off cost of training it and the cost of one scoring of
a validation-sized batch. One thread per trial, as the serial executor
runs them. `--json PATH` also writes the rows.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any

import torch

from benchmarks import markdown_table

SECTION = "generative"
TITLE = "Generative models on digits: epoch time and quality"

CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("autoencoder", {"variant": "undercomplete"}),
    ("autoencoder", {"variant": "sparse"}),
    ("autoencoder", {"variant": "denoising"}),
    ("autoencoder", {"variant": "contractive"}),
    ("autoencoder", {"variant": "undercomplete", "arch": "conv"}),
    ("vae", {}),
    ("gan", {"arch": "mlp", "beta1": 0.5}),
    ("gan", {"arch": "dcgan", "beta1": 0.5, "channels": 16}),
]


def scorer_cost() -> dict[str, Any]:
    from hypersweep.models import scorer
    from hypersweep.models.data import load_dataset

    s = load_dataset("digits")
    scorer._MEMO.clear()
    start = time.perf_counter()
    frozen = scorer.scorer_for(s.x_train, s.y_train, 10)
    trained = time.perf_counter()
    scores = frozen.score(s.x_test, s.x_val)
    return {"model": "scorer", "train_s": trained - start,
            "score_s": time.perf_counter() - trained, "fid_test_vs_val": scores["fid"]}


def bench(model: str, params: dict[str, Any], epochs: int) -> dict[str, Any]:
    from hypersweep.models.train import train_trial
    from hypersweep.models.trial import TrialSpec

    spec = TrialSpec(model=model, data={"name": "digits"}, seed=0, threads=1,
                     params={"epochs": epochs, "lr": 1e-3, **params})
    result = train_trial(spec, lambda epoch, metrics: False)
    quality = "val_mse" if model == "autoencoder" else "val_fid"
    return {"model": model, **params, "state": result.state.value,
            "epoch_s": statistics.median(h["epoch_time"] for h in result.history),
            "first": result.history[0][quality], quality: result.history[-1][quality]}


def measure(epochs: int) -> list[dict[str, Any]]:
    """The scorer's cost, then one row per configuration."""
    torch.set_num_threads(1)
    previous = os.environ.get("HYPERSWEEP_CACHE")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["HYPERSWEEP_CACHE"] = cache    # measure a cold scorer, leave none behind
        try:
            return [scorer_cost()] + [bench(m, p, epochs) for m, p in CONFIGS]
        finally:
            if previous is None:
                os.environ.pop("HYPERSWEEP_CACHE", None)
            else:
                os.environ["HYPERSWEEP_CACHE"] = previous


def run(quick: bool = False) -> str:
    epochs = 2 if quick else 15
    rows = measure(epochs)
    scorer, trained = rows[0], rows[1:]
    table = [{"model": r["model"],
              "settings": ", ".join(f"{k}={v}" for k, v in r.items()
                                    if k not in ("model", "state", "epoch_s", "first", "val_mse",
                                                 "val_fid")) or "-",
              "state": r["state"], "s per epoch": r["epoch_s"],
              "metric": "val_mse" if "val_mse" in r else "val_fid",
              "after epoch 1": r["first"], f"after epoch {epochs}": r.get("val_mse", r.get("val_fid"))}
             for r in trained]
    return (f"{epochs} epochs each, lr 1e-3, one thread. The frozen scorer (the FID-style "
            f"distance's feature net): trained once in {scorer['train_s']:.1f} s, one scoring "
            f"of a validation-sized batch {1000 * scorer['score_s']:.1f} ms; test vs validation images "
            f"score {scorer['fid_test_vs_val']:.1f} (the floor a perfect generator reaches)."
            f"\n\n" + markdown_table(table))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs per configuration")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = measure(2 if args.quick else args.epochs)
    for row in rows:
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
