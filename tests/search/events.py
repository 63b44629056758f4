"""A driver's events, recorded for tests to read."""
from __future__ import annotations

from hypersweep.search.driver import StudyEvents, TrialEvent


class Recorder(StudyEvents):
    """Every event a driver tells, in order."""

    def __init__(self) -> None:
        self.ended: list[TrialEvent] = []
        self.started: list[tuple[int, int]] = []
        self.epochs: list[tuple[int, int]] = []
        self.notices: list[str] = []

    def trial_started(self, number: int, running: int) -> None:
        self.started.append((number, running))

    def epoch(self, number: int, step: int) -> None:
        self.epochs.append((number, step))

    def trial_ended(self, event: TrialEvent) -> None:
        self.ended.append(event)

    def notice(self, line: str) -> None:
        self.notices.append(line)
