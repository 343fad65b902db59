"""`CheckpointWriter`: trainer checkpoints written on a background thread.

The driver captures a checkpoint at a boundary (`trainer_checkpoints.prepare_state`: copies of
the weights and of every state, a few milliseconds) and hands the rest to the writer
(serialising, fsync, checksums, the rename into place, rotation), so training goes on
while the disk works. One write is in flight at most: the next `submit` (and `wait`)
waits for it first. A checkpoint counts only once its folder is renamed into place, so a
kill during a background write leaves the previous checkpoints, exactly as a kill during
a synchronous one. A failed write is raised (E416) at the next `submit` or `wait`.
"""

from __future__ import annotations

import errno
import threading
import time
from typing import Callable, Optional

from stagedsl.errors import OS_HINTS, CheckpointError, Problem, StagedError


class CheckpointWriter:
    """Runs checkpoint writes one at a time on a background thread (or inline when `background` is off)."""

    def __init__(self, *, background: bool = True):
        self.background = background
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._what = ""
        self.busy_s = 0.0  # time spent writing, for benchmarks

    def submit(self, what: str, job: Callable[[], object]) -> None:
        """Run `job` (writing `what`) after the previous one; in the background when enabled."""
        self.wait()
        self._what = what
        if not self.background:
            self._run(job)
            self._raise()
            return
        self._thread = threading.Thread(target=self._run, args=(job,), name="stagedsl-checkpoint", daemon=True)
        self._thread.start()

    def _run(self, job: Callable[[], object]) -> None:
        started = time.perf_counter()
        try:
            job()
        except BaseException as exc:  # surfaced in the main thread by wait()
            self._error = exc
        finally:
            self.busy_s += time.perf_counter() - started

    def wait(self) -> None:
        """Wait for the write in flight; raise its error, if any (E416)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._raise()

    def _raise(self) -> None:
        error, self._error = self._error, None
        if error is None:
            return
        if isinstance(error, StagedError):
            raise error
        hint = "check the disk (space, permissions)"
        if isinstance(error, OSError):
            hint = OS_HINTS.get(errno.errorcode.get(error.errno or 0, ""), hint)
        raise CheckpointError([Problem(code="E416", message=f"writing checkpoint `{self._what}` failed: "
                                       f"{type(error).__name__}: {error}",
                                       hint=f"{hint}; the previous checkpoints are intact")]) from error

    def close(self, *, raise_errors: bool = True) -> None:
        """Wait for the last write; with `raise_errors` off, an error is dropped (another one is on its way)."""
        try:
            self.wait()
        except CheckpointError:
            if raise_errors:
                raise
