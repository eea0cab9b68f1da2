"""``--timeout``: a deadline for loading and analysing, from the command line only."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import click

__all__ = ["Deadline", "TimeUp", "deadline"]


class TimeUp(BaseException):
    """Raised by ``--timeout``; a BaseException so that no ``except Exception`` swallows it."""


class Deadline:
    """``--timeout``: SIGALRM raises ``TimeUp`` in the main thread when the time is up; a
    forward pass stuck inside one native call is ended by a watchdog a little later."""

    GRACE = 30.0

    def __init__(self) -> None:
        self.seconds: float | None = None
        self.watchdog: threading.Timer | None = None
        self.previous: Any = None

    def option(self, ctx: click.Context, _param: click.Parameter, value: float | None) -> None:
        if value is not None and threading.current_thread() is threading.main_thread():
            self.start(value)

    def start(self, seconds: float) -> None:
        self.seconds = seconds
        self.previous = signal.signal(signal.SIGALRM, self._expired)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        self.watchdog = threading.Timer(seconds + self.GRACE, self._abandon)
        self.watchdog.daemon = True
        self.watchdog.start()

    def stop(self) -> None:
        if self.seconds is None:
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)
        if self.watchdog is not None:
            self.watchdog.cancel()
        self.seconds = self.watchdog = None

    def _message(self) -> str:
        return (f"stopped after --timeout {self.seconds:g} s: loading or analysing the model did not "
                "finish in time (a forward pass that never returns?); raise --timeout or check the model")

    def _expired(self, _signum: int, _frame: Any) -> None:
        raise TimeUp(self._message())

    def _abandon(self) -> None:
        sys.stderr.write(f"error: {self._message()}\n")
        sys.stderr.flush()
        os._exit(2)


deadline = Deadline()
