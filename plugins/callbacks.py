"""Built-in callbacks. None yet: the hook is implemented so the module loads like the others."""

from stagedsl import hookimpl


@hookimpl
def register_callbacks(register):
    """Register the built-in callbacks (currently none)."""
