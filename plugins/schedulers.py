"""Built-in LR schedulers: ``factory(optimizer, total_steps, **args) -> torch LR scheduler``.

The engine steps them once per optimizer step; ``total_steps`` is the stage's length
and arguments annotated `Steps` arrive as step counts from the stage's start. Every
factor scales each parameter group's own LR, so per-group LRs keep their ratios.
``plateau`` is *monitored*: stepped with a metric after each evaluation instead.
"""

from stagedsl import Steps, hookimpl


def constant(optimizer, total_steps: int, warmup: Steps = 0):
    """The base LR throughout, after an optional linear warmup."""
    from torch.optim.lr_scheduler import LambdaLR

    from stagedsl_plugins.lr_curves import Constant, check_warmup

    check_warmup(warmup, total_steps)
    if warmup == 0:
        return None  # nothing changes the LR: no scheduler to step at all
    return LambdaLR(optimizer, Constant(warmup))


def multistep(optimizer, total_steps: int, milestones: list[Steps], gamma: float = 0.1):
    """Multiply the LR by gamma at each milestone (torch MultiStepLR)."""
    from torch.optim.lr_scheduler import MultiStepLR

    if any(m < 0 for m in milestones):
        raise ValueError(f"milestones cannot be negative, found {list(milestones)}")
    return MultiStepLR(optimizer, milestones=sorted(int(m) for m in milestones), gamma=gamma)


def cosine(optimizer, total_steps: int, warmup: Steps = 0, min_lr_ratio: float = 0.0):
    """Linear warmup, then cosine decay to min_lr_ratio x the base LR at the stage's end."""
    from torch.optim.lr_scheduler import LambdaLR

    from stagedsl_plugins.lr_curves import Cosine, check_warmup

    check_warmup(warmup, total_steps)
    return LambdaLR(optimizer, Cosine(total_steps, warmup, min_lr_ratio))


def linear(optimizer, total_steps: int, warmup: Steps = 0, end_factor: float = 0.0):
    """Linear warmup, then linear decay to end_factor x the base LR at the stage's end."""
    from torch.optim.lr_scheduler import LambdaLR

    from stagedsl_plugins.lr_curves import Linear, check_warmup

    check_warmup(warmup, total_steps)
    return LambdaLR(optimizer, Linear(total_steps, warmup, end_factor))


def onecycle(
    optimizer,
    total_steps: int,
    max_lr_ratio: float = 1.0,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
    cycle_momentum: bool = True,
):
    """One-cycle policy (torch OneCycleLR) peaking at max_lr_ratio x each group's LR."""
    from torch.optim.lr_scheduler import OneCycleLR

    peaks = [group["lr"] * max_lr_ratio for group in optimizer.param_groups]
    return OneCycleLR(
        optimizer,
        max_lr=peaks,
        total_steps=total_steps,
        pct_start=pct_start,
        anneal_strategy=anneal_strategy,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        three_phase=three_phase,
        cycle_momentum=cycle_momentum,
    )


def plateau(
    optimizer,
    total_steps: int,
    mode: str = "min",
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    min_lr: float = 0.0,
    cooldown: int = 0,
):
    """Reduce the LR by factor when the monitored metric stalls for patience evaluations."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    return ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience, threshold=threshold, min_lr=min_lr, cooldown=cooldown)


@hookimpl
def register_schedulers(register):
    """Register the built-in schedulers; plateau is stepped with a metric."""
    register("constant", constant)
    register("multistep", multistep)
    register("cosine", cosine)
    register("linear", linear)
    register("onecycle", onecycle)
    register("plateau", plateau, monitored=True)
