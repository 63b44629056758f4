"""The benchmark harness: section bookkeeping in RESULTS.md and the search report's
arithmetic (the benchmarks themselves run with `make bench`)."""
from __future__ import annotations

from benchmarks.run import benchmarks, update_results
from benchmarks.search_efficiency import StudyRun, report


def test_sections_are_replaced_in_place_and_others_kept(tmp_path):
    path = tmp_path / "RESULTS.md"
    update_results("search", "<!-- bench:search -->\nold\n<!-- /bench:search -->\n", path)
    update_results("ray", "<!-- bench:ray -->\nray numbers\n<!-- /bench:ray -->\n", path)
    update_results("search", "<!-- bench:search -->\nnew\n<!-- /bench:search -->\n", path)
    text = path.read_text()
    assert "old" not in text and text.count("new") == 1 and "ray numbers" in text
    assert text.index("new") < text.index("ray numbers")        # the section kept its place


def test_every_benchmark_is_discovered():
    assert set(benchmarks()) == {"search", "executors", "builders", "generative", "lifecycle", "gpu"}


def test_a_benchmark_that_cannot_run_here_keeps_its_section(tmp_path, monkeypatch, capsys):
    """The GPU section, measured on a GPU machine, survives `make bench` on one without."""
    from benchmarks import gpu
    from benchmarks.run import main

    results = tmp_path / "RESULTS.md"
    kept = "<!-- bench:gpu -->\nmeasured on a GPU\n<!-- /bench:gpu -->\n"
    update_results("gpu", kept, results)
    monkeypatch.setattr(gpu, "available", lambda: "no CUDA device on this machine")
    monkeypatch.setattr(gpu, "run", lambda quick=False: "must not run")
    assert main(["--only", "gpu", "--results", str(results)]) == 0
    assert "measured on a GPU" in results.read_text()
    assert "skipped (no CUDA device on this machine)" in capsys.readouterr().out


def test_most_trials_at_once():
    from benchmarks.gpu import most_at_once
    assert most_at_once([]) == 0
    assert most_at_once([(0, 1), (2, 3)]) == 1
    assert most_at_once([(0, 4), (1, 2), (1.5, 5), (4.5, 6)]) == 3


def test_markdown_table():
    from benchmarks import markdown_table
    text = markdown_table([{"name": "a", "s": 1.234567}, {"name": "b", "s": 20.0}])
    assert text.splitlines() == ["| name | s |", "|---|---|", "| a | 1.235 |", "| b | 20 |"]


def test_epochs_to_target_counts_every_epoch_until_a_completed_trial_reaches_it():
    # trial 2 (pruned, None) spends epochs but cannot reach the target
    r = StudyRun(best=0.97, epochs=16, trace=[(4, 0.90), (1, None), (3, 0.96), (8, 0.97)], seconds=0)
    assert r.epochs_to(0.95) == 8 and r.epochs_to(0.97) == 16 and r.epochs_to(0.99) is None


def test_report_verdict():
    random = [StudyRun(0.95, 100, [(50, 0.9), (50, 0.95)], 0)] * 5
    fast = [StudyRun(0.96, 40, [(1, None), (30, 0.96), (9, 0.9)], 0)] * 5
    runs = {"grid": random, "random": random, "tpe": random, "tpe+asha": fast}
    text = report(runs, {"trials": 2, "epochs": 50, "seeds": 5})
    assert "target = random search's median best = 0.9500" in text
    assert "| tpe+asha | 0.9600 | 40 | 31 | 5/5 |" in text
    assert "31 epochs, 0.31 of random's -> **met**" in text
