"""Live progress for `hypersweep run`: trials done / pruned / failed, best so far."""
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

    def __enter__(self) -> "StudyProgress":
        self._progress.start()
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None and self._progress.tasks[0].completed == self._done:
            # Stopped before any trial (bad input found at start-up: a Ray address,
            # resources the cluster lacks): the bar goes, the error line says it all.
            self._progress.live.transient = True
        self._progress.stop()

    def update(self, event) -> None:
        c = event.counts
        status = (f"[green]{c['COMPLETE']} done[/] [yellow]{c['PRUNED']} pruned[/] "
                  f"[red]{c['FAIL']} failed[/]")
        if event.best is not None:
            status += f"  best {self.metric} {event.best:.4f}"
        self._progress.update(self._task, advance=1, status=status)
        if event.state is TrialState.FAIL and event.reason:
            self._progress.console.print(f"[red]trial {event.number} failed:[/] "
                                         f"{escape(event.reason)}", markup=True, highlight=False)
