"""L1 unstructured pruning of Linear and Conv weights, made permanent (seed 001 §7.1).

`prune_model` zeroes, in each Linear/Conv weight tensor, the `amount` fraction of
entries with the smallest magnitude (``torch.nn.utils.prune.l1_unstructured``) and
folds the mask into the weight (``prune.remove``), so the result is a plain model
whose state dict has the original names. Unstructured zeros do not make a dense
model smaller or faster by themselves; they pay off with sparse kernels or compression.
"""

from __future__ import annotations

PRUNABLE = ("Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")
"""Module classes (from ``torch.nn``) whose ``weight`` is pruned."""


def prune_model(model: "torch.nn.Module", amount: float) -> dict[str, int]:  # noqa: F821
    """Prune `model` in place. Returns ``{"tensors", "pruned", "total", "parameters"}``:
    tensors pruned, entries zeroed in them, their size, and the model's parameter count."""
    import torch
    from torch.nn.utils import prune

    kinds = tuple(getattr(torch.nn, name) for name in PRUNABLE)
    targets = [m for m in model.modules() if isinstance(m, kinds) and isinstance(getattr(m, "weight", None), torch.nn.Parameter)]
    seen: set[int] = set()
    tensors = pruned = total = 0
    with torch.no_grad():
        for module in targets:
            if id(module.weight) in seen:  # a weight shared between modules is pruned once
                continue
            seen.add(id(module.weight))
            if amount > 0:
                prune.l1_unstructured(module, name="weight", amount=amount)
                prune.remove(module, "weight")
            tensors += 1
            pruned += int((module.weight == 0).sum().item())
            total += module.weight.numel()
    parameters = sum(p.numel() for p in model.parameters())
    return {"tensors": tensors, "pruned": pruned, "total": total, "parameters": parameters}
