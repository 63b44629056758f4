"""Executors for tests of the driver's contract with parallel executors, without Ray
(the Ray executor has its own tests). Both implement search.executors.Executor and
run the real training loop."""
from __future__ import annotations

import queue
import random
from concurrent.futures import ThreadPoolExecutor

from hypersweep.models.train import train_trial
from hypersweep.models.trial import TrialSpec
from hypersweep.search.executors import OnReport, run_guarded


class ShuffledExecutor:
    """`capacity` trials in flight, handed back one at a time in a random order, as a
    parallel executor does when trials finish at different times."""

    def __init__(self, capacity: int, order_seed: int, train=train_trial) -> None:
        self.capacity = capacity
        self._rng = random.Random(order_seed)
        self._train = train
        self._queue: list[TrialSpec] = []
        self._done: list = []

    def submit(self, spec: TrialSpec) -> None:
        self._queue.append(spec)

    def wait(self, on_report: OnReport):
        for spec in self._queue:
            result = run_guarded(self._train, spec,
                                 lambda step, m, n=spec.trial_number: on_report(n, step, m))
            self._done.append((spec.trial_number, result))
        self._queue.clear()
        return [self._done.pop(self._rng.randrange(len(self._done)))]

    def shutdown(self) -> None:
        self._queue.clear()


class ThreadExecutor:
    """Trials train concurrently in threads; their reports come back through a queue
    so that every store write stays on the driver's thread (the single writer)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._pool = ThreadPoolExecutor(capacity)
        self._events: queue.Queue = queue.Queue()

    def submit(self, spec: TrialSpec) -> None:
        def report(step, metrics):
            reply: queue.Queue = queue.Queue(maxsize=1)
            self._events.put(("report", spec.trial_number, (step, metrics, reply)))
            return reply.get()

        def work():
            self._events.put(("done", spec.trial_number, run_guarded(train_trial, spec, report)))
        self._pool.submit(work)

    def wait(self, on_report: OnReport):
        done = []
        while not done or not self._events.empty():
            kind, number, payload = self._events.get()
            if kind == "report":
                step, metrics, reply = payload
                reply.put(on_report(number, step, metrics))
            else:
                done.append((number, payload))
        return done

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
