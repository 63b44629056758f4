"""Live progress for `hypersweep run`: trials running / done / pruned / failed, best so far."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task,
                           TextColumn, TimeElapsedColumn)
from rich.table import Column
from rich.text import Text

from hypersweep.models.trial import TrialState
from hypersweep.search.driver import StudyEvents, TrialEvent


class StudyProgress(StudyEvents):
    def __init__(self, console: Console, cfg, done: int = 0) -> None:
        self.cfg, self._done = cfg, done
        self.metric = cfg.search.objectives[0].metric if len(cfg.search.objectives) == 1 else None
        self._progress = Progress(TextColumn("[bold]trials"), BarColumn(bar_width=15),
                                  MofNCompleteColumn(),
                                  _StatusColumn(), TimeElapsedColumn(),
                                  console=console, transient=False)
        self._task = self._progress.add_task("trials", total=cfg.search.trials,
                                             completed=done, status="starting")
        self._counts: dict[str, int] | None = None      # none until a trial ends
        self._interrupted = 0       # failed by Ctrl-C or SIGTERM: not against the budget
        self._best: float | None = None
        self._running = 0
        self._epochs: dict[int, int] = {}       # the last epoch each running trial reported
        epochs = cfg.params.get("epochs")
        self._of = f"/{epochs}" if isinstance(epochs, int) else ""

    def __enter__(self) -> "StudyProgress":
        self._progress.start()
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None and self._progress.tasks[0].completed == self._done:
            # Stopped before any trial (bad input found at start-up: a Ray address,
            # resources the cluster lacks): the bar goes, the error line says it all
            # (the Live display alone: rich's Progress adds an empty line in a pipe).
            self._progress.live.transient = True
            self._progress.live.stop()
            return
        self._progress.stop()

    def trial_started(self, number: int, running: int) -> None:
        self._running = running
        self._progress.update(self._task, status=self._status())

    def epoch(self, number: int, step: int) -> None:
        self._epochs[number] = step
        self._progress.update(self._task, status=self._status())

    def trial_ended(self, event: TrialEvent) -> None:
        self._counts, self._best = dict(event.counts), event.best
        self._running = event.running
        self._epochs.pop(event.number, None)
        # A trial a stop cut short does not count against the budget (a resume
        # runs it again): the bar does not advance for it.
        self._interrupted += event.interrupted
        self._progress.update(self._task, advance=0 if event.interrupted else 1,
                              status=self._status())
        if event.state is not TrialState.FAIL and not self._progress.console.is_terminal:
            self._ended_line(event)
        elif event.state is TrialState.FAIL and event.reason:
            # One line each, however long: a log is searched by line (a terminal
            # wraps it for the eye).
            self._progress.console.print(f"[red]trial {event.number} failed:[/] "
                                         f"{escape(event.reason)}", markup=True, highlight=False,
                                         soft_wrap=True)

    def _ended_line(self, event: TrialEvent) -> None:
        """Into a pipe or a file (a batch job's log, where no bar is drawn until the
        end): a line per trial that completes or is pruned, as it ends."""
        task = self._progress.tasks[0]
        values = ", ".join(f"{o.metric} {_value(o.metric, v)}" for o, v in
                           zip(self.cfg.search.objectives, event.values or ()))
        state = (event.reason if event.state is TrialState.PRUNED and event.reason
                 else event.state.name.lower())     # printed as it is: no markup
        best = f", best {self._best:.4f}" if self._best is not None else ""
        self._progress.console.print(
            f"trial {event.number} {state}{': ' + values if values else ''} "
            f"({int(task.completed)} of {int(task.total or 0)} done{best}, "
            f"{_clock(task.elapsed)} elapsed)", markup=False, highlight=False, soft_wrap=True)

    def print(self, markup: str) -> None:
        """A line of rich markup above the bar."""
        self._progress.console.print(markup, markup=True)

    def notice(self, line: str, console: Console | None = None) -> None:
        """A line above the bar. Into a pipe or a file, on `console` where given
        (notes on stderr, apart from the results); in a terminal always the bar's
        own, which moves the live bar down (another ran on after a frame of it)."""
        if console is None or self._progress.console.is_terminal:
            console = self._progress.console
        console.print(f"[yellow]{escape(line)}[/]", markup=True, highlight=False, soft_wrap=True)

    def _status(self) -> str:
        # The best value first: a terminal too narrow for the whole line cuts its end.
        parts = [f"best {self.metric} {self._best:.4f}"] if self._best is not None else []
        running = self._running
        if running:
            steps = sorted(self._epochs.values(), reverse=True)
            at = ", ".join(map(str, steps)) if len(steps) <= 3 else f"{steps[-1]}-{steps[0]}"
            word = "epoch" if len(steps) == 1 else "epochs"
            parts.append(f"[cyan]{running} running[/]" +
                         (f" ({word} {at}{self._of})" if steps else ""))
        c = self._counts
        # Done, pruned and failed once some are pruned, failed or interrupted (until
        # then the count of trials finished says it): the line stays within 80 columns.
        if c is not None:
            c = {**c, "FAIL": c["FAIL"] - self._interrupted, "interrupted": self._interrupted}
        if c is not None and (c["PRUNED"] or c["FAIL"] or c["interrupted"]):
            parts.append(f"[green]{c['COMPLETE']} done[/]")
            parts += [f"[{colour}]{c[state]} {word}[/]" for state, word, colour in
                      (("PRUNED", "pruned", "yellow"), ("FAIL", "failed", "red"),
                       ("interrupted", "interrupted", "red")) if c[state]]
        return " ".join(parts)


def _value(metric: str, value: float) -> str:
    """An objective's value in a trial's line: a count whole (param_count 2839), a
    score to four places."""
    from hypersweep.search.config import as_count
    shown = as_count(metric, value)
    return str(shown) if isinstance(shown, int) else f"{value:.4f}"


def _clock(seconds: float | None) -> str:
    """Elapsed time as the bar shows it: 0:01:05."""
    whole = int(seconds or 0)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class _StatusColumn(ProgressColumn):
    """The status text, the one column a narrow terminal shortens (cut with "…"):
    the bar, the count and the elapsed time keep their width."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=False))    # so the table may narrow it

    def render(self, task: Task) -> Text:
        text = Text.from_markup(task.fields["status"])
        text.no_wrap, text.overflow = True, "ellipsis"
        return text
