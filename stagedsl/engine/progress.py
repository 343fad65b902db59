"""Progress and diagnostics on stderr: a rich progress bar on a terminal, plain lines otherwise.

The engine calls in at the log cadence and at stage boundaries only, never per step. A
small background thread (`_Ticker`) reads the current step from `step` (a plain int the
step loop keeps) twice a second, so the screen moves from the first seconds whatever
the log cadence: the bar is kept current on a terminal, and piped output gets a line
within `FIRST_LINE_S` of a stage's start and then at least every `QUIET_LINE_S` when the
log cadence is slower. Piped lines carry the stage's elapsed time and ETA.

Notices and warnings (fallbacks, checkpoint key reports, gate warnings) go through here too.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any, Callable, Optional

FIRST_LINE_S = 2.0
"""Piped output: a stage's first progress line comes by this many seconds after its start."""
QUIET_LINE_S = 30.0
"""Piped output: at most this long without a progress line while a stage trains."""
_TICK_S = 0.5


def figure(value: Any) -> str:
    """A number as the screen shows it: 4 significant digits (JSON files keep full precision)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def clock(seconds: Optional[float]) -> str:
    """``3.2s``, ``42s``, ``12:05``, ``1:02:03``; ``-`` when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Reports a run's progress to stderr (only on the writing process).

    `step`: returns the running stage's current step (read by the ticker thread).
    """

    def __init__(self, *, enabled: bool = True, stream: Optional[IO[str]] = None, step: Optional[Callable[[], int]] = None,
                 width: Optional[int] = None):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self._step = step
        self._bar = None
        self._task = None
        self._stage = ""
        self._total = 0
        self._first_step = 0
        self._started = time.perf_counter()
        self._last_line = 0.0  # when the last progress line of this stage was printed (piped); 0: none yet
        self._values: dict[str, Any] = {}  # the bar's values: the latest of each
        self._shown = ""  # the values of the next piped line
        self._lock = threading.RLock()
        self._ticker: Optional[_Ticker] = None

    # -- lines -----------------------------------------------------------------------
    def _print(self, line: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            try:
                if self._bar is not None:
                    self._bar.console.print(line, highlight=False, markup=False, soft_wrap=True)
                else:
                    print(line, file=self.stream, flush=True)
            except (BrokenPipeError, ValueError, OSError):  # a closed stderr never stops a run
                self.enabled = False

    def notice(self, message: str) -> None:
        """A one-line note."""
        self._print(f"note: {message}")

    def warn(self, message: str, code: Optional[str] = None) -> None:
        """A one-line warning (``warning[W010]: ...`` with a `code`)."""
        self._print(f"warning[{code}]: {message}" if code else f"warning: {message}")

    # -- stages ----------------------------------------------------------------------
    def stage_start(self, name: str, total_steps: int, attempt: int = 0, start_step: int = 0) -> None:
        """A stage (or a retry of it) starts, at `start_step` when it resumes."""
        again = f" (retry {attempt})" if attempt else ""
        with self._lock:
            self._stage, self._total, self._first_step = f"{name}{again}", total_steps, start_step
            self._started, self._last_line, self._values, self._shown = time.perf_counter(), 0.0, {}, ""
        if not self.enabled:
            return
        if self.tty:
            self._start_bar()
            with self._lock:
                self._task = self._bar.add_task(self._stage, total=total_steps, completed=start_step, info="")
        else:
            resumed = f", from step {start_step}" if start_step else ""
            self._print(f"stage {self._stage}: {total_steps} step{'s' if total_steps != 1 else ''}{resumed}")
        self._start_ticker()

    def update(self, stage_step: int, values: dict[str, Any], steps_per_s: Optional[float] = None) -> None:
        """At the log cadence: the step reached and the latest values."""
        if not self.enabled:
            return
        shown = "  ".join(f"{k} {figure(v)}" for k, v in values.items())
        if steps_per_s:
            shown += f"  {steps_per_s:.0f} steps/s" if steps_per_s >= 10 else f"  {steps_per_s:.2g} steps/s"
        with self._lock:
            self._shown = shown
            if self._bar is not None and self._task is not None:
                self._values.update(values)
                info = "  ".join(f"{k} {figure(v)}" for k, v in self._values.items())
                self._bar.update(self._task, completed=stage_step, info=info)
                return
        self._line(stage_step)

    def _line(self, stage_step: int) -> None:
        """A piped progress line: step, share, the latest values, elapsed time and ETA of the stage."""
        with self._lock:
            now = time.perf_counter()
            elapsed = now - self._started
            done = stage_step - self._first_step
            eta = (self._total - stage_step) * elapsed / done if done > 0 else None
            share = f" ({100 * stage_step / self._total:.0f}%)" if self._total else ""
            shown, self._shown = self._shown, ""
            self._last_line = now
        self._print(f"[{self._stage}] step {stage_step}/{self._total}{share}  {shown + '  ' if shown else ''}"
                    f"elapsed {clock(elapsed)}  ETA {clock(eta)}")

    def tick(self) -> None:
        """The ticker's beat: keep the bar current, or print a line when the pipe has been quiet too long."""
        if not self.enabled or self._step is None:
            return
        with self._lock:
            if not self._stage:
                return
            step = self._step()
            if self._bar is not None and self._task is not None:
                self._bar.update(self._task, completed=step)
                return
            if self._bar is not None:
                return
            now = time.perf_counter()
            due = self._started + FIRST_LINE_S if not self._last_line else self._last_line + QUIET_LINE_S
        if now >= due and step < self._total:
            self._line(step)

    def stage_end(self, name: str, status: str, steps: int, seconds: float, monitor: Optional[str] = None,
                  best: Optional[float] = None) -> None:
        """A stage ended: one line saying how, and the best monitored value."""
        self._stop_ticker()
        with self._lock:
            if self._bar is not None and self._task is not None:
                self._bar.remove_task(self._task)  # the live area shows the running stage only; its line stays
                self._task = None
            self._stage = ""
        best_text = f"; best {monitor} = {figure(best)}" if monitor and best is not None else ""
        self._print(f"stage {name}: {status.replace('_', ' ')} after {steps} step{'s' if steps != 1 else ''} "
                    f"({clock(seconds)}){best_text}")

    def close(self) -> None:
        """Stop the ticker and the progress bar."""
        self._stop_ticker()
        with self._lock:
            if self._bar is not None:
                try:
                    self._bar.stop()
                except (BrokenPipeError, ValueError, OSError):
                    pass
                self._bar = None

    # -- the bar and the ticker ------------------------------------------------------------
    def _start_bar(self) -> None:
        if self._bar is not None:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar
        from rich.table import Column

        console = Console(file=self.stream, width=self.width)
        # Fixed columns first; the values last, cut with an ellipsis, so at 80 columns the bar, the
        # step count and the ETA stay.
        self._bar = Bar(
            TextColumn("{task.description}", table_column=Column(no_wrap=True, max_width=18, overflow="ellipsis")),
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1, min_width=0)),
            console=console, transient=False, expand=True,
        )
        self._bar.start()

    def _start_ticker(self) -> None:
        if self._step is not None and self._ticker is None:
            self._ticker = _Ticker(self)
            self._ticker.start()

    def _stop_ticker(self) -> None:
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.stop()


class _Ticker(threading.Thread):
    """Calls `Progress.tick` every half second until stopped."""

    def __init__(self, progress: Progress):
        super().__init__(name="stagedsl-progress", daemon=True)
        self.progress = progress
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(_TICK_S):
            try:
                self.progress.tick()
            except Exception:  # the screen is never worth a failed run
                return

    def stop(self) -> None:
        self.done.set()
        if self is not threading.current_thread():
            self.join(timeout=2.0)
