"""Training throughput of every builder on the dataset it is meant for.

    .venv/bin/python -m benchmarks.bench_builders            # 3 epochs each
    .venv/bin/python -m benchmarks.bench_builders --quick    # 1 epoch, small data
    python -m benchmarks.run --only builders                  # into RESULTS.md

Prints one row per builder: parameters, seconds per epoch (median over epochs
after the first, which pays one-off costs) and the whole trial's seconds, on one
CPU thread so the rows compare. Not part of the test suite: timings belong
here, not in assertions.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from benchmarks import markdown_table
from hypersweep.models.registry import builder_names
from hypersweep.models.train import train_trial
from hypersweep.models.trial import TrialSpec

SECTION = "builders"
TITLE = "Training throughput of every builder (one CPU thread)"

# builder -> (data, params); builders not listed run on digits with defaults.
WORKLOADS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "rnn": ({"name": "seq_digits"}, {}),
    "lstm": ({"name": "adding", "options": {"length": 50}}, {}),
    "gru": ({"name": "copy"}, {"head": "many_to_many"}),
    "seq2seq": ({"name": "reverse"}, {}),
    "char_lm": ({"name": "text", "options": {"max_chars": 100_000}}, {}),
}
SMALL = {"text": {"max_chars": 20_000}, "adding": {"n": 500}, "copy": {"n": 500},
         "reverse": {"n": 500}}


def bench(name: str, epochs: int, quick: bool, device: str = "cpu", threads: int | None = 1,
          precision: str = "fp32") -> dict[str, float]:
    """One trial of `name` on its workload: parameters, seconds per epoch, trial seconds."""
    data, params = WORKLOADS.get(name, ({"name": "digits"}, {}))
    if quick:
        data = {**data, "options": {**data.get("options", {}), **SMALL.get(data["name"], {})}}
    spec = TrialSpec(model=name, data=data, seed=0, threads=threads, device=device,
                     params={**params, "epochs": epochs, "precision": precision})
    start = time.perf_counter()
    result = train_trial(spec, lambda epoch, metrics: False)
    total = time.perf_counter() - start
    times = [h["epoch_time"] for h in result.history]
    per_epoch = statistics.median(times[1:] or times)
    return {"params": result.metrics["param_count"], "s_per_epoch": per_epoch,
            "total_s": total, "state": result.state.value, "data": data["name"]}


def run(quick: bool = False) -> str:
    epochs = 1 if quick else 3
    rows = []
    for name in builder_names():
        r = bench(name, epochs, quick)
        rows.append({"builder": name, "data": r["data"], "parameters": int(r["params"]),
                     "s per epoch": r["s_per_epoch"], "trial s": r["total_s"],
                     "state": r["state"]})
    return (f"{epochs} epoch(s) per builder on its dataset{' (small data)' if quick else ''}; "
            f"seconds per epoch: the median after the first epoch.\n\n" + markdown_table(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch on small data")
    parser.add_argument("builders", nargs="*", help="default: every registered builder")
    args = parser.parse_args()
    epochs = 1 if args.quick else 3
    print(f"{'builder':<10} {'data':<11} {'params':>9} {'s/epoch':>8} {'total s':>8}  state")
    for name in args.builders or builder_names():
        r = bench(name, epochs, args.quick)
        print(f"{name:<10} {r['data']:<11} {int(r['params']):>9} {r['s_per_epoch']:>8.3f} "
              f"{r['total_s']:>8.2f}  {r['state']}")


if __name__ == "__main__":
    main()
