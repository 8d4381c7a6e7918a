"""SIGINT and SIGTERM (Ctrl-C, what cluster schedulers send) during
``jaxpot md``: the run stops with :class:`jaxpot.errors.Interrupted`,
"interrupted at step N; continue with `jaxpot md --restart DIR`", at its
last checkpoint. A signal that arrives while a block's rows, frames and
checkpoint are written waits until they are complete, so the files stay
consistent; the checkpoint itself is written atomically (:mod:`jaxpot.files`).
"""
from __future__ import annotations

import signal
import threading

from ..errors import Interrupted
from ..io import CHECKPOINT

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptGuard:
    """Installs the handlers (main thread only) until :meth:`restore`.
    ``step``: the step of the last checkpoint; ``hold``/``release`` bracket
    the writes of a block."""

    def __init__(self, step: int, run_dir):
        self.step, self.run_dir = int(step), run_dir
        self.held, self.pending = False, None
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handler)

    def _error(self) -> Interrupted:
        if (self.run_dir / CHECKPOINT).exists():
            return Interrupted(f"interrupted at step {self.step}; continue with "
                               f"`jaxpot md --restart {self.run_dir}`")
        return Interrupted(f"interrupted at step {self.step}, before the first checkpoint: nothing to "
                           f"continue, run again")

    def _handler(self, signum, frame):
        if self.held:
            self.pending = signum
            return
        raise self._error()

    def hold(self) -> None:
        self.held = True

    def release(self, step: int | None = None) -> None:
        if step is not None:
            self.step = int(step)
        self.held = False
        if self.pending is not None:
            self.pending = None
            raise self._error()

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}
