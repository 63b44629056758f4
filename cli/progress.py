"""Live progress for `hypersweep run`: trials running / done / pruned / failed, best so far."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from models.trial import TrialState


class StudyProgress:
    def __init__(self, console: Console, cfg, done: int = 0) -> None:
        self.cfg, self._done = cfg, done
        self.metric = cfg.search.objectives[0].metric if len(cfg.search.objectives) == 1 else None
        self._progress = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                                  console=console, transient=False)
        self._task = self._progress.add_task("trials", total=cfg.search.trials,
                                             completed=done, status="starting")
        self._counts: dict[str, int] | None = None      # none until a trial ends
        self._best: float | None = None

    def __enter__(self) -> "StudyProgress":
        self._progress.start()
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None and self._progress.tasks[0].completed == self._done:
            # Stopped before any trial (bad input found at start-up: a Ray address,
            # resources the cluster lacks): the bar goes, the error line says it all.
            self._progress.live.transient = True
        self._progress.stop()

    def started(self, number: int, running: int) -> None:
        """A trial was handed to the executor; `running` counts it."""
        self._progress.update(self._task, status=self._status(running))

    def update(self, event) -> None:
        self._counts, self._best = dict(event.counts), event.best
        self._progress.update(self._task, advance=1, status=self._status(event.running))
        if event.state is TrialState.FAIL and event.reason:
            self._progress.console.print(f"[red]trial {event.number} failed:[/] "
                                         f"{escape(event.reason)}", markup=True, highlight=False)

    def note(self, line: str) -> None:
        """A line from the executor as trials go (a trial retried), above the bar."""
        self._progress.console.print(f"[yellow]{escape(line)}[/]", markup=True, highlight=False)

    def _status(self, running: int) -> str:
        parts = [f"[cyan]{running} running[/]"] if running else []
        if self._counts is not None:        # pruned and failed once there are any:
            c = self._counts                # the bar's line stays short enough for 80 columns
            parts.append(f"[green]{c['COMPLETE']} done[/]")
            parts += [f"[{colour}]{c[state]} {word}[/]" for state, word, colour in
                      (("PRUNED", "pruned", "yellow"), ("FAIL", "failed", "red")) if c[state]]
            if self._best is not None:
                parts.append(f" best {self.metric} {self._best:.4f}")
        return " ".join(parts)
