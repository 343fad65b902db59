"""Error types of stagedsl and the `Problem` record they carry.

Every fault the user can fix is a `Problem`: a stable code, what is wrong, where
(file, key path, line, column and the span's end; or the command-line argument it is
in) and a hint. Errors are raised where the fault is known
and rendered once, by the CLI (`stagedsl.cli.render`).
"""

from __future__ import annotations

import difflib
from typing import Iterable, Optional

import attrs


@attrs.frozen
class Problem:
    """One thing wrong with a spec, a plan or a run, with where it is and how to fix it.

    Where, as data for any renderer: `line` and `column` (1-based) start the text at fault
    in `file` and `end_line`/`end_column` end it (exclusive), on the wrong value for a
    wrong value, on the key for an unknown key. A problem in a command-line argument
    (``--set stage[0].steps=ten``) has `argument`, the option and its value as written,
    `argument_index`, which of that option's occurrences it is (from 0), and `column`/
    `end_column` counting characters within `argument`; its `line` is None.
    """

    code: str
    message: str
    file: Optional[str] = None
    path: Optional[str] = None
    line: Optional[int] = None
    column: Optional[int] = None
    hint: Optional[str] = None
    severity: str = "error"
    end_line: Optional[int] = None
    end_column: Optional[int] = None
    argument: Optional[str] = None
    argument_index: Optional[int] = None
    trace: Optional[str] = attrs.field(default=None, eq=False, repr=False)
    """The traceback of a plugin's exception behind this problem: shown only with ``staged --debug``."""

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f" --> {self.file}" + (f":{self.line}:{self.column or 1}" if self.line else "")
        at = f" at `{self.path}`" if self.path else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.severity}[{self.code}]: {self.message}{at}{where}{hint}"


def closest(word: object, choices: Iterable[str], *, cutoff: float = 0.5) -> Optional[str]:
    """The choice most like `word`, or None when none has a similarity of at least `cutoff`.

    Case does not hide a match (``adamW`` is closest to ``adamw``, not ``adam``): choices are
    ranked by difflib's ratio of the case-folded words, ties broken by the ratio as written,
    then by the order of `choices`.
    """
    if not isinstance(word, str):
        return None
    folded = word.casefold()
    best: Optional[str] = None
    best_score = (-1.0, -1.0)
    matcher = difflib.SequenceMatcher(None)
    matcher.set_seq1(folded)
    for choice in choices:
        matcher.set_seq2(choice.casefold())
        floor = max(cutoff, best_score[0])
        if matcher.real_quick_ratio() < floor or matcher.quick_ratio() < floor:
            continue  # upper bounds of the ratio: this choice can neither qualify nor win (20k unknown keys stay cheap)
        score = (matcher.ratio(), difflib.SequenceMatcher(None, word, choice).ratio())
        if score[0] >= cutoff and score > best_score:
            best, best_score = choice, score
    return best


def did_you_mean(word: object, choices: Iterable[str], *, cutoff: float = 0.5) -> Optional[str]:
    """The hint ``did you mean "<closest choice>"?``, or None when nothing is close.

    The one did-you-mean of stagedsl: every hint that offers a near name comes from here.
    """
    match = closest(word, choices, cutoff=cutoff)
    return f'did you mean "{match}"?' if match is not None else None


class StagedError(Exception):
    """Base class of every error stagedsl raises on purpose. `exit_code` is the CLI's."""

    exit_code = 1

    def __init__(self, problems: Iterable[Problem] | str, *, code: str = "E000"):
        if isinstance(problems, str):
            problems = [Problem(code=code, message=problems)]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        """The rendered problems, as the CLI prints them (one block each, then a count)."""
        from stagedsl.diagnostics import render_problems

        return render_problems(self.problems)


class SpecError(StagedError):
    """The spec text is wrong: syntax, keys, types, values, references. Exit code 2."""

    exit_code = 2


class PlanError(StagedError):
    """The spec is well formed but cannot be compiled against the model, data or plugins."""

    exit_code = 2


class PluginError(StagedError):
    """A plugin failed to load, or two plugins claim one name."""

    exit_code = 2


class UsageError(StagedError):
    """The command line itself is wrong (bad option value, missing file)."""

    exit_code = 2


class RunError(StagedError):
    """Training failed while running (non-finite loss, a crash inside a plugin)."""

    exit_code = 1


class CheckpointError(StagedError):
    """A checkpoint is missing, corrupt, unsafe to load, or does not fit the model."""

    exit_code = 1


class ExportError(StagedError):
    """An export failed or did not match PyTorch within tolerance."""

    exit_code = 1


class GateStopped(StagedError):
    """A gate's condition failed and its action was to stop the plan. Exit code 3."""

    exit_code = 3


class RunStopped(StagedError):
    """A callback ended the run before its plan did, on purpose (a search's pruner stops a trial).

    Raised from a callback's event method; the run writes ``summary.json`` with status
    ``stopped_by_callback`` and the problem under ``stopped_by``, then re-raises it.
    """

    exit_code = 1


OS_HINTS = {
    "EROFS": "the file system is read-only: pick an --out on a writable disk (or remount it read-write)",
    "ENOSPC": "the disk is full: free some space (older runs, a lower checkpoint.keep_last), then `staged resume` "
              "continues from the last good checkpoint",
    "EDQUOT": "the disk quota is used up: free some space, then `staged resume` continues from the last good checkpoint",
    "ENAMETOOLONG": "a path is too long for the file system: pick a shorter --out, or shorter run and stage names",
    "EACCES": "permission denied: check who owns the folder and its mode (ls -ld), or pick another --out",
    "EPERM": "the operation is not permitted here: check the folder's owner, mode and attributes, or pick another --out",
    "EMFILE": "too many open files: raise the limit (ulimit -n) or lower data.workers",
    "EIO": "the disk reported an I/O error: check it (dmesg), then resume from the last good checkpoint",
}
"""What to do about an OS failure, by errno name."""


def os_failure(exc: OSError, doing: str, *, error: type["StagedError"] = None, checkpoint: Optional[str] = None) -> "StagedError":
    """The error (E445, a `RunError` unless `error` says otherwise) for an `OSError` met while `doing` something.

    It names the file and the OS's reason, and its hint says what to do about that
    reason; `checkpoint` names the last good checkpoint, which the failure left intact.
    """
    import errno as errno_names

    name = errno_names.errorcode.get(exc.errno or 0, "")
    target = exc.filename if exc.filename is not None else None
    where = f" `{target}`" if target is not None else ""
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = OS_HINTS.get(name, "check the disk and the folder (space, permissions, path length)")
    if checkpoint:
        hint += f"; the last good checkpoint is `{checkpoint}`"
    message = f"{doing} failed{where}: {reason}" + (f" ({name})" if name else "")
    return (error or RunError)([Problem(code="E445", message=message, hint=hint)])
