"""One thread per process that stops ONNX Runtime runs at their deadlines.

A run is stopped by setting its ``RunOptions.terminate``; ORT checks the flag between kernels. A
``threading.Timer`` per call did that too, but started (and tore down) a thread for every request:
measurable on a single-text request (``bench/results/request-breakdown.md``). Here, arming a
deadline is a heap push under a lock, and one daemon thread sleeps until the earliest one. Arming
wakes that thread only when the new deadline comes before the thread's own next wake-up: with an
empty heap it wakes every ``IDLE_WAKE_S`` by itself, so the usual request (deadline ~a minute away,
one request at a time) costs no thread wake-up at all, only the heap push.

The thread is started on first use in the process that uses it, and a forked child starts with
a fresh lock and heap (the parent's thread, which may hold the lock at the fork, is not in the
child), so a watchdog created before gunicorn forks its workers works in each worker.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

IDLE_WAKE_S = 1.0  # how long the thread sleeps when nothing is armed (then a later deadline needs no wake-up)


class _Armed:
    __slots__ = ("live", "options")

    def __init__(self, options: Any) -> None:
        self.options = options
        self.live = True


class Watchdog:
    """``with watchdog.stop_at(deadline, run_options): session.run(..., run_options)``."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Armed]] = []
        self._seq = itertools.count()
        self._pid = -1  # the process whose thread serves the heap
        self._wake_at = 0.0  # when the thread wakes by itself (monotonic); an earlier deadline must wake it
        self.wakeups = 0  # how often the thread has woken (for tests: arming should rarely wake it)
        ref = weakref.ref(self)

        def forget_in_child() -> None:
            if (dog := ref()) is not None:
                dog._forget()

        os.register_at_fork(after_in_child=forget_in_child)

    def _forget(self) -> None:
        """In a forked child: the parent's lock state and entries are not this process's."""
        self._cond = threading.Condition(threading.Lock())
        self._heap = []
        self._pid = -1
        self._wake_at = 0.0

    @contextlib.contextmanager
    def stop_at(self, deadline: float | None, options: Any) -> Iterator[None]:
        """Set ``options.terminate`` once ``time.monotonic()`` passes ``deadline`` (``None``: never),
        unless the block has ended by then."""
        if deadline is None:
            yield
            return
        armed = _Armed(options)
        with self._cond:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._serve, name="textclf-watchdog", daemon=True).start()
            heapq.heappush(self._heap, (deadline, next(self._seq), armed))
            if deadline < self._wake_at:  # the thread would sleep past it: wake it to sleep less
                self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                armed.live = False
                # Calls mostly end in the order they started: dropping ended calls from the top
                # keeps the heap as small as the number of calls in flight.
                while self._heap and not self._heap[0][2].live:
                    heapq.heappop(self._heap)

    def _serve(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][0] <= now or not self._heap[0][2].live):
                    _, _, armed = heapq.heappop(self._heap)
                    if armed.live:
                        armed.options.terminate = True
                timeout = self._heap[0][0] - now if self._heap else IDLE_WAKE_S
                self._wake_at = now + timeout
                self._cond.wait(timeout)
                self.wakeups += 1


WATCHDOG = Watchdog()
