"""An example stagedsl plugin: one loss and one freeze strategy.

Registration is cheap: this module imports nothing but `stagedsl.hookimpl`. torch is
imported inside the loss factory, when a run builds the loss, so `staged validate`
and `staged plugins` stay instant with this plugin installed.

In a spec::

    loss = { use = "charbonnier", eps = 1e-3 }
    freeze = [{ use = "every_nth", module = "layers", n = 2 }]
"""

from __future__ import annotations

from stagedsl import hookimpl

__version__ = "0.1.0"


def charbonnier(eps: float = 1e-3):
    """Charbonnier loss: mean of sqrt((prediction - target)^2 + eps^2), a smooth L1.

    `eps` is the width of the quadratic bowl around zero error; it must be positive.
    """
    if eps <= 0:
        raise ValueError(f"eps must be positive, found {eps}")
    # the submodule is not called `charbonnier`: importing a submodule sets an attribute
    # of its package, and `stagedsl_example_plugin.charbonnier` must stay this factory
    from stagedsl_example_plugin.charbonnier_loss import CharbonnierLoss

    return CharbonnierLoss(eps)


def every_nth(names: list[str], module: str, n: int = 2, offset: int = 0) -> list[str]:
    """Every `n`-th parameter tensor of `module` (from `offset`), in registration order.

    `names` is every parameter name of the model, supplied by the engine; the spec
    writes only `module`, `n` and `offset`.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, found {n}")
    if not 0 <= offset < n:
        raise ValueError(f"offset must be in [0, {n}), found {offset}")
    prefix = module.rstrip(".") + "."
    inside = [name for name in names if name.startswith(prefix)]
    if not inside:
        tops = sorted({name.split(".")[0] for name in names})
        raise ValueError(f"the model has no module `{module}` with parameters; top-level modules: {', '.join(tops)}")
    return inside[offset::n]


@hookimpl
def register_losses(register):
    """Register the `charbonnier` loss."""
    register("charbonnier", charbonnier)


@hookimpl
def register_freeze_strategies(register):
    """Register the `every_nth` freeze strategy."""
    register("every_nth", every_nth)
