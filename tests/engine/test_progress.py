"""The progress screen: a line from the first seconds when piped, elapsed time and ETA, a bar that fits 80 columns."""

from __future__ import annotations

import io
import re

from stagedsl.engine import progress as progress_module
from stagedsl.engine.progress import FIRST_LINE_S, QUIET_LINE_S, Progress, clock, figure

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Clock:
    """A stand-in for time.perf_counter that the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_piped_output_has_a_line_within_seconds_with_elapsed_and_eta(monkeypatch):
    clock_ = Clock()
    monkeypatch.setattr(progress_module.time, "perf_counter", clock_)
    step = {"n": 0}
    stream = io.StringIO()
    progress = Progress(stream=stream, step=lambda: step["n"])
    progress._start_ticker = lambda: None  # the test beats the ticker itself
    progress.stage_start("warmup", 2000)
    step["n"], clock_.now = 10, clock_.now + FIRST_LINE_S / 2
    progress.tick()
    assert "step 10/" not in stream.getvalue()  # not yet: the first line comes at FIRST_LINE_S
    step["n"], clock_.now = 40, clock_.now + FIRST_LINE_S / 2
    progress.tick()
    line = stream.getvalue().splitlines()[-1]
    assert line == "[warmup] step 40/2000 (2%)  elapsed 2.0s  ETA 1:38"  # 1960 steps at 20 steps/s
    step["n"], clock_.now = 100, clock_.now + 1.0
    progress.update(100, {"loss": 0.0123456}, 20.0)  # the log cadence prints its own line
    assert stream.getvalue().splitlines()[-1] == "[warmup] step 100/2000 (5%)  loss 0.01235  20 steps/s  elapsed 3.0s  ETA 57s"
    lines = len(stream.getvalue().splitlines())
    clock_.now += QUIET_LINE_S / 2
    progress.tick()
    assert len(stream.getvalue().splitlines()) == lines  # a quiet pipe is not flooded
    step["n"], clock_.now = 700, clock_.now + QUIET_LINE_S
    progress.tick()
    assert stream.getvalue().splitlines()[-1].startswith("[warmup] step 700/2000 (35%)  elapsed ")
    progress.close()


def test_the_bar_keeps_bar_steps_and_eta_at_80_columns():
    stream = Terminal()
    progress = Progress(stream=stream, width=80)
    progress.stage_start("warmup_encdec", 2000)
    progress.update(1200, {"loss": 0.003944181662518531, "val/loss": 0.004, "val/mse": 0.004, "val/nrmse": 0.0752}, 85.3)
    progress.close()  # draws the final frame
    frames = [ANSI.sub("", f) for f in re.split(r"\r|\x1b\[2K", stream.getvalue()) if f.strip()]
    last = frames[-1].strip()
    assert len(last) <= 80
    assert "warmup_encdec" in last and "━" in last and "1200/2000" in last and "ETA" in last
    assert "loss 0.003944" in last  # 4 significant digits, and the values come after what must stay


def test_numbers_on_screen_have_four_significant_digits():
    assert figure(0.003944181662518531) == "0.003944" and figure(1234.5678) == "1235" and figure(3) == "3"
    assert [clock(s) for s in (0.42, 42.4, 125, 3725, None)] == ["0.4s", "42s", "2:05", "1:02:05", "-"]


def test_a_closed_stderr_does_not_fail_the_run():
    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError

    progress = Progress(stream=Closed())
    progress.stage_start("s", 10)
    progress.notice("still fine")
    progress.stage_end("s", "completed", 10, 1.0)
    assert progress.enabled is False
