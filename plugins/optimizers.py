"""Built-in optimizers: ``factory(param_groups, lr, **args) -> torch.optim.Optimizer``.

`param_groups` are ``{"params", "lr", "weight_decay", "name"}`` dicts (plain tensors or
an iterable of them are accepted too). A group's own ``lr`` and ``weight_decay`` win
when they are not None; otherwise the factory's apply. Keys the optimizer does not
know, such as the plan's group ``name``, stay in the group, so logs and schedulers can
tell groups apart.
"""

from stagedsl import hookimpl


def groups_with_defaults(param_groups, lr: float, weight_decay: float) -> list:
    """Copies of `param_groups` with a None or missing ``lr``/``weight_decay`` filled in."""
    groups = list(param_groups)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    filled = []
    for group in groups:
        group = dict(group)
        group["params"] = list(group["params"])
        if group.get("lr") is None:
            group["lr"] = lr
        if group.get("weight_decay") is None:
            group["weight_decay"] = weight_decay
        filled.append(group)
    return filled


def _all_cuda(groups: list) -> bool:
    params = [p for g in groups for p in g["params"]]
    return bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)


def adamw(
    param_groups,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    fused: bool | None = None,
):
    """AdamW (decoupled weight decay); fused=None uses the fused kernel when every parameter is on CUDA."""
    import torch

    groups = groups_with_defaults(param_groups, lr, weight_decay)
    fused = _all_cuda(groups) if fused is None else fused
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, fused=fused or None)


def adam(
    param_groups,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    fused: bool | None = None,
):
    """Adam (L2 weight decay added to the gradient); fused=None uses the fused kernel on CUDA."""
    import torch

    groups = groups_with_defaults(param_groups, lr, weight_decay)
    fused = _all_cuda(groups) if fused is None else fused
    return torch.optim.Adam(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, fused=fused or None)


def sgd(param_groups, lr: float, momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0, dampening: float = 0.0):
    """Stochastic gradient descent with (Nesterov) momentum."""
    import torch

    groups = groups_with_defaults(param_groups, lr, weight_decay)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, dampening=dampening)


def rmsprop(
    param_groups,
    lr: float,
    alpha: float = 0.99,
    eps: float = 1e-8,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    centered: bool = False,
):
    """RMSprop."""
    import torch

    groups = groups_with_defaults(param_groups, lr, weight_decay)
    return torch.optim.RMSprop(groups, lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay, centered=centered)


@hookimpl
def register_optimizers(register):
    """Register the optimizers; adamw is the one a stage gets when it names none."""
    register("adamw", adamw, default=True)
    register("adam", adam)
    register("sgd", sgd)
    register("rmsprop", rmsprop)
