"""A small patch transformer that maps a 2D field to the field some time later.

Three top-level parts, named as the PDE team's staged recipe freezes them:
``encoder_2d`` (patch embedding), ``transformer`` (token mixing, positional embedding
inside) and ``decoder_2d`` (back to the field's channels and size).
"""

from __future__ import annotations

import torch
from torch import nn


class PatchTransformer(nn.Module):
    """Learned positional embedding, a `nn.TransformerEncoder` and a final LayerNorm over patch tokens."""

    def __init__(self, tokens: int, dim: int, depth: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.position = nn.Parameter(torch.zeros(1, tokens, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=heads,
            dim_feedforward=int(dim * mlp_ratio),
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, N, dim] tokens -> [B, N, dim] tokens."""
        return self.norm(self.layers(tokens + self.position))


class PDETransformer(nn.Module):
    """[B, C, H, W] field -> [B, C, H, W] field `dt` later (the input plus a learned update)."""

    def __init__(
        self,
        channels: int = 2,
        size: int = 32,
        patch: int = 4,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        residual: bool = True,
    ):
        super().__init__()
        if size % patch:
            raise ValueError(f"size ({size}) must be a multiple of patch ({patch})")
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        self.grid = size // patch
        self.residual = residual
        self.encoder_2d = nn.Conv2d(channels, dim, kernel_size=patch, stride=patch)
        self.transformer = PatchTransformer(self.grid * self.grid, dim, depth, heads, mlp_ratio, dropout)
        self.decoder_2d = nn.ConvTranspose2d(dim, channels, kernel_size=patch, stride=patch)

    def forward(self, field: torch.Tensor) -> torch.Tensor:
        """Embed patches, mix them, decode back to the field's shape."""
        tokens = self.encoder_2d(field)  # [B, dim, g, g]
        batch, dim, rows, cols = tokens.shape
        tokens = self.transformer(tokens.flatten(2).transpose(1, 2))  # [B, g*g, dim]
        update = self.decoder_2d(tokens.transpose(1, 2).reshape(batch, dim, rows, cols))
        return field + update if self.residual else update
