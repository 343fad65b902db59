"""Progress and diagnostics on stderr: a rich progress bar on a terminal, plain lines otherwise.

Updated at the log cadence and at stage boundaries only, never per step. Notices and
warnings (fallbacks, checkpoint key reports, gate warnings) go through here too.
"""

from __future__ import annotations

import sys
from typing import IO, Any, Optional


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    """Reports a run's progress to stderr (only on the writing process)."""

    def __init__(self, *, enabled: bool = True, stream: Optional[IO[str]] = None):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar = None
        self._task = None
        self._stage = ""
        self._total = 0

    def _print(self, line: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(line, highlight=False, markup=False)
        else:
            print(line, file=self.stream, flush=True)

    def notice(self, message: str) -> None:
        """A one-line note."""
        self._print(f"note: {message}")

    def warn(self, message: str, code: Optional[str] = None) -> None:
        """A one-line warning (``warning[W010]: ...`` with a `code`)."""
        self._print(f"warning[{code}]: {message}" if code else f"warning: {message}")

    def stage_start(self, name: str, total_steps: int, attempt: int = 0) -> None:
        """A stage (or a retry of it) starts."""
        self._stage, self._total = name, total_steps
        again = f" (retry {attempt})" if attempt else ""
        if not self.enabled:
            return
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            if self._bar is None:
                self._bar = Bar(
                    TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                    TimeRemainingColumn(), console=Console(file=self.stream), transient=False,
                )
                self._bar.start()
            self._task = self._bar.add_task(f"{name}{again}", total=total_steps, info="")
        else:
            self._print(f"stage {name}{again}: {total_steps} steps")

    def update(self, stage_step: int, values: dict[str, Any], steps_per_s: Optional[float] = None) -> None:
        """At the log cadence: the step reached and the latest values."""
        if not self.enabled:
            return
        info = "  ".join(f"{k} {_fmt(v)}" for k, v in values.items())
        if steps_per_s:
            info += f"  {steps_per_s:.1f} steps/s"
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=stage_step, info=info)
        else:
            self._print(f"[{self._stage}] step {stage_step}/{self._total}  {info}")

    def stage_end(self, message: str) -> None:
        """A stage ended: one line saying how."""
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self._bar.tasks[-1].completed)
            self._task = None
        self._print(message)

    def close(self) -> None:
        """Stop the progress bar."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
