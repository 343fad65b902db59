"""A plain multilayer perceptron: the smallest model a spec can name."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}
"""Activation names the `mlp` model accepts."""


def activation_class(name: str) -> type[nn.Module]:
    """The activation module class called `name`; a ValueError listing the choices if none."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


class MLP(nn.Module):
    """Linear layers with an activation (and optional dropout) between them.

    Each input is flattened from dimension 1; several inputs (``model(a, b)``) are
    flattened and concatenated, so `in_features` is the total width.
    """

    def __init__(self, in_features: int, hidden: list[int], out_features: int, activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        act = activation_class(activation)
        widths = [in_features, *hidden]
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), act()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-1], out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Flatten each input from dimension 1, concatenate them, apply the layers."""
        flat = [x.flatten(1) if x.dim() > 2 else (x.unsqueeze(1) if x.dim() == 1 else x) for x in inputs]
        x = flat[0] if len(flat) == 1 else torch.cat(flat, dim=1)
        return self.layers(x)
