"""Optional dependencies: import one on use, or say which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from stagedsl.errors import PluginError, Problem


def import_optional(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or raise a `PluginError` (E103) naming the ``stagedsl[extra]`` that installs it.

    `purpose` says what needs it ("the stacking ensemble"); heavy optional pieces
    (scikit-learn, LightGBM, the ONNX converters) are imported through here when used.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PluginError([Problem(code="E103", message=f"{purpose} needs `{module.split('.')[0]}`, which is not installed ({exc})",
                                   hint=f"pip install 'stagedsl[{extra}]'")]) from None


__all__ = ["import_optional"]
