"""SIGINT / SIGTERM: finish the current step, save a checkpoint, say how to resume, exit.

`handle_stop_signals()` (a context manager, main thread only) makes the first SIGINT or
SIGTERM set `STOP.requested`; the step loop looks at it after every step, the driver
then saves a trainer checkpoint and raises `RunInterrupted` (exit code 128 + the signal,
130 for SIGINT, 143 for SIGTERM), whose hint is the `staged resume` command. A second
signal stops at once (`StoppedAtOnce`, a KeyboardInterrupt, as a second Ctrl-C is
elsewhere); the engine reports it as E440 too, with the same exit code and the last
checkpoint that was written before it. Under torchrun the same signal again within
`RELAY_S` seconds is the launcher passing on the Ctrl-C the terminal already sent every
process, and is not a second one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import Iterator, Optional

import attrs

from stagedsl.errors import Problem, StagedError

HANDLED = ("SIGINT", "SIGTERM")
RELAY_S = 2.0
"""Under torchrun, how soon the same signal again counts as the launcher's relay of the first."""


class StopRequest:
    """Set by a signal handler; read by the step loop after each step."""

    def __init__(self) -> None:
        self.requested = False
        self.signum: Optional[int] = None
        self.at = 0.0

    def request(self, signum: int) -> None:
        self.signum, self.requested, self.at = signum, True, time.monotonic()

    def clear(self) -> None:
        self.requested, self.signum = False, None

    def relayed(self, signum: int) -> bool:
        """Whether `signum`, arriving after a first signal, is torchrun passing that one on."""
        return (signum == self.signum and time.monotonic() - self.at < RELAY_S
                and "TORCHELASTIC_RUN_ID" in os.environ)

    @property
    def name(self) -> str:
        try:
            return signal.Signals(self.signum).name if self.signum is not None else "a stop request"
        except ValueError:
            return f"signal {self.signum}"


STOP = StopRequest()
"""The process's stop request (signals are process-wide, so is this)."""


class RunInterrupted(StagedError):
    """The run stopped on SIGINT / SIGTERM after saving a checkpoint. Exit code 128 + signal."""

    exit_code = 130

    def __init__(self, *, signal_name: str, signum: Optional[int], where: str, checkpoint: Optional[str], run_dir: str,
                 processes: int = 1):
        saved = f"saved `{checkpoint}`" if checkpoint else "no checkpoint could be saved"
        super().__init__([Problem(
            code="E440",
            message=f"stopped by {signal_name} at {where}; {saved}",
            hint=f"continue with: staged resume {run_dir}" + (f" --nproc {processes}" if processes > 1 else ""),
        )])
        self.exit_code = 128 + signum if signum else 130
        self.checkpoint = checkpoint


class StoppedAtOnce(KeyboardInterrupt):
    """A second SIGINT / SIGTERM: the run stops where it is, without saving."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    def error(self, where: str, checkpoint: Optional[str], run_dir: str, processes: int = 1) -> "RunInterrupted":
        """The E440 error saying where it stopped and which checkpoint a resume continues from (a resume
        of `processes` processes, as the run had)."""
        name = StopRequest()
        name.request(self.signum)
        error = RunInterrupted(signal_name=f"a second {name.name}", signum=self.signum, where=where, checkpoint=None,
                               run_dir=run_dir, processes=processes)
        kept = f"the last checkpoint `{checkpoint}` is intact" if checkpoint else "no checkpoint had been written yet"
        error.problems[0] = attrs.evolve(error.problems[0], message=f"stopped at once by a second {name.name} at {where} "
                                         f"(nothing more was saved); {kept}")
        error.checkpoint = checkpoint
        return error


def _handler(signum: int, frame: object) -> None:
    if STOP.requested:  # a second signal: stop now
        if STOP.relayed(signum):
            return
        raise StoppedAtOnce(signum)
    STOP.request(signum)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 says it for all
        return
    try:
        sys.stderr.write(f"\n{STOP.name}: finishing the current step and saving a checkpoint "
                         f"(send it again to stop at once)\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


@contextlib.contextmanager
def handle_stop_signals(enabled: bool = True) -> Iterator[StopRequest]:
    """Route SIGINT / SIGTERM to `STOP` while the block runs (only in the main thread)."""
    STOP.clear()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield STOP
        return
    previous = {}
    for name in HANDLED:
        number = getattr(signal, name, None)
        if number is None:
            continue
        try:
            previous[number] = signal.signal(number, _handler)
        except (ValueError, OSError):
            pass
    try:
        yield STOP
    finally:
        for number, handler in previous.items():
            try:
                signal.signal(number, handler)
            except (ValueError, OSError):
                pass
        STOP.clear()
