"""What a failure the engine did not raise itself becomes: one located error with a hint.

`describe_failure(exc, state, ctx)` turns an exception out of a plugin, torch or the OS
into the `StagedError` the CLI renders: an `OSError` is E445 with a hint for its errno
(a full disk, a read-only file system, a name too long, no permission) and the last
good checkpoint named; a dtype clash between the batches and the model is E400 with the
dtypes and what to change; anything else is E400 naming where it happened.
"""

from __future__ import annotations

import re
import traceback
from typing import Any, Optional

from stagedsl.errors import Problem, RunError, StagedError, os_failure

_DTYPE_CLASH = re.compile(r"same dtype|expected scalar type|Input type \(|should be the same|expected .*dtype|"
                          r"not implemented for '(Long|Int|Byte|Char|Short|Bool)'", re.IGNORECASE)


def where(state: Any) -> str:
    """``stage `x` at step n``, or ``setting up the run`` before the first stage."""
    return f"stage `{state.stage_name}` at step {state.stage_step}" if state.stage_name else "setting up the run"


def describe_failure(exc: BaseException, state: Any, ctx: Optional[Any] = None) -> StagedError:
    """The error to raise for `exc`, met while the run was where `state` says (see the module docstring)."""
    if isinstance(exc, OSError):
        return os_failure(exc, where(state), checkpoint=state.last_resume_point)
    message = f"{where(state)} failed: {type(exc).__name__}: {exc}"
    hint = dtype_hint(ctx) if _DTYPE_CLASH.search(str(exc)) else None
    return RunError([Problem(code="E400", message=message, hint=hint, trace="".join(traceback.format_exception(exc)))])


def dtype_hint(ctx: Optional[Any]) -> str:
    """What to change when the batches' dtype does not fit the model's weights (their dtypes, when known)."""
    inputs = _first_input_dtype(ctx)
    weights = _weights_dtype(ctx)
    if inputs is not None and weights is not None and inputs != weights:
        return (f"the dataset gives inputs of dtype {_name(inputs)} but the model's weights are {_name(weights)}: "
                f"have the dataset return {_name(weights)} tensors (x.to({weights})), e.g. images as floats scaled to [0, 1]")
    return ("the inputs' dtype does not match the model's weights (integer or uint8 inputs to a float model?): "
            "have the dataset return float tensors")


def _first_input_dtype(ctx: Optional[Any]) -> Any:
    try:
        sample = ctx.splits.train[0]
        inputs = sample[0] if isinstance(sample, (tuple, list)) else sample
        inputs = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
        return getattr(inputs, "dtype", None)
    except Exception:
        return None


def _weights_dtype(ctx: Optional[Any]) -> Any:
    try:
        return next(p.dtype for p in ctx.model.parameters() if p.is_floating_point())
    except Exception:
        return None


def _name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


__all__ = ["describe_failure", "dtype_hint", "where"]
